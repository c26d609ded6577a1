/** Zipf draws for the DNS benchmarks: reproducible, from a seed. */

/** A linear congruential generator in [0, 1): the same draws on every run. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
}

/** `count` ranks (0-based) out of `n`, rank r drawn with probability proportional to 1/(r+1)^s. */
export function zipfRanks(n: number, s: number, count: number, next: () => number): number[] {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < n; r++) {
    total += 1 / (r + 1) ** s;
    cdf[r] = total;
  }
  const out: number[] = [];
  for (let q = 0; q < count; q++) {
    const x = next() * total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] as number) < x) lo = mid + 1;
      else hi = mid;
    }
    out.push(lo);
  }
  return out;
}
