/**
 * How a backend's test hands a store to the conformance suites. A module of its own because both
 * `store.conformance.ts` and the suites it runs (`state-export.conformance.ts`,
 * `sign-in-tokens.conformance.ts`) need it, and those must not import their runner back.
 */
import type { JobStore, QueueSettings } from './types.js';

export interface OpenedStore {
  store: JobStore;
  /** Closes `store` and opens the same database / keyspace again. */
  reopen?: () => Promise<JobStore>;
  /** Closes whichever store is open and removes its data. */
  cleanup: () => Promise<void>;
}

export type OpenStore = (defaults: QueueSettings) => Promise<OpenedStore>;
