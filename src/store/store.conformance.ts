/**
 * The one conformance suite every `JobStore` backend runs unchanged (see docs/store-contract.md).
 *
 * A backend's test file calls `runStoreConformance('name', open)`. `open(defaults)` must return a
 * fresh, empty store constructed with those default settings; it is called once per test. When the
 * backend can, it also returns `reopen`, which closes the store and opens the same database /
 * keyspace again (the returned store replaces the old one; `cleanup` must then close the new one).
 *
 * Nothing here depends on a particular backend: only the `JobStore` interface, the pure policy and
 * the error classes.
 *
 * The tests live in parts along the interface's seams (`*.conformance.ts` beside this file), each a
 * function of the kit (kit.conformance.ts: the store of the running test and the helpers on it).
 */
import { describe } from 'vitest';
import { conformanceKit } from './kit.conformance.js';
import type { OpenStore, OpenedStore } from './conformance-types.js';
import { countersSettingsConformance } from './counters-settings.conformance.js';
import { durabilityConformance } from './durability.conformance.js';
import { enqueueClaimConformance } from './enqueue-claim.conformance.js';
import { finishConformance } from './finish.conformance.js';
import { leaseConformance } from './leases.conformance.js';
import { listJobsConformance } from './list-jobs.conformance.js';
import { outputNameConformance } from './output-names.conformance.js';
import { pendingOrderConformance } from './pending-order.conformance.js';
import { signInTokenConformance } from './sign-in-tokens.conformance.js';
import { exportImportConformance } from './state-export.conformance.js';

export type { OpenStore, OpenedStore };
export { CONFORMANCE_DEFAULTS } from './kit.conformance.js';

export function runStoreConformance(name: string, open: OpenStore): void {
  describe(`JobStore conformance: ${name}`, () => {
    const kit = conformanceKit(open);
    const reopened = () => (kit.canReopen ? kit.reopen().then(() => kit.store) : null);

    enqueueClaimConformance(kit);
    leaseConformance(kit);
    finishConformance(kit);
    listJobsConformance(kit);
    pendingOrderConformance(kit);
    countersSettingsConformance(kit);
    durabilityConformance(kit);

    describe('export/import', () => {
      exportImportConformance(() => kit.store, open);
    });

    describe('output names', () => {
      outputNameConformance(() => kit.store, reopened);
    });

    describe('sign-in links', () => {
      signInTokenConformance(() => kit.store, open, reopened);
    });
  });
}
