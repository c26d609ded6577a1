/**
 * zod, through one file. tsc emits this as a plain re-export; the build
 * (scripts/bundle-vendor.mjs) then replaces the emitted file with zod
 * bundled into it, so a command loads one module instead of the ~100 files
 * of zod's package (its locales among them, which Sluice does not use and
 * the bundle leaves out). Without the bundle step this still works, only
 * slower to start. Import zod from here, never from 'zod'.
 */
export { z } from 'zod';
