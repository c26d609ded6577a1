/** The EventStore contract, against the memory store and the SQLite store (each test gets a fresh file). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { MemoryStore } from '../../src/events/memory-store.js';
import { SqliteStore } from '../../src/events/sqlite-store.js';
import { eventStoreContract } from '../support/event-store-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

eventStoreContract('memory', () => new MemoryStore());
eventStoreContract('SQLite', () => new SqliteStore(join(dir, `events-${++n}.db`)));
