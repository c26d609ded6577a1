/**
 * Where the first invalid UTF-8 byte is. A streaming decode of a prefix
 * tolerates a character cut at its end, so the first prefix that fails ends
 * exactly at the first invalid byte.
 */
export function firstInvalidUtf8(bytes: Uint8Array): number {
  let lo = 0;
  let hi = bytes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid + 1), { stream: true });
      lo = mid + 1;
    } catch {
      hi = mid;
    }
  }
  return lo;
}
