/** Exit statuses (README "Exit status"); a module of its own so `main` reaches it without loading a command's modules. */
export const EXIT = { ok: 0, failed: 1, usage: 2, notLive: 3 } as const;
