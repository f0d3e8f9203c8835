/**
 * The dashboard's live feed across control-plane processes: an audit entry recorded, or a
 * broadcast message set, on one process is announced on the cluster bus so the dashboards (and the
 * participants' banners, which read the shared store) of every other process update at once.
 * Worker presence and open tabs travel with the WorkerDirectory's snapshots instead.
 *
 * Both facts are already in the shared store, so a missed message costs only liveness: after a
 * reconnect (`onResync`) the audit log is read again and the broadcast re-announced.
 */
import type { AuditEntry, AuditLog } from '../admin/audit-log.js';
import type { Broadcast, BroadcastService } from '../broadcast/broadcast.js';
import type { ClusterBus, Unsubscribe } from './cluster-bus.js';

export const AUDIT_TOPIC = 'audit';
export const BROADCAST_TOPIC = 'broadcast';

/** Forwards audit entries and broadcast changes; returns a function that stops it. No-op unshared. */
export function syncLiveFeed(
  cluster: ClusterBus,
  audit: AuditLog,
  broadcast: BroadcastService,
  onError: (err: unknown) => void = () => {},
): Unsubscribe {
  if (!cluster.shared) return () => {};
  const stops: Unsubscribe[] = [];

  const onEntry = (entry: AuditEntry, origin: 'local' | 'remote') => {
    if (origin === 'local') void cluster.publish(AUDIT_TOPIC, entry).catch(onError);
  };
  audit.on('entry', onEntry);
  stops.push(() => audit.off('entry', onEntry));
  stops.push(
    cluster.subscribe(AUDIT_TOPIC, (m) => {
      if (isAuditEntry(m)) audit.receive(m);
    }),
  );

  const onBroadcast = (b: Broadcast | null, origin: 'local' | 'remote') => {
    if (origin === 'local') void cluster.publish(BROADCAST_TOPIC, { broadcast: b }).catch(onError);
  };
  broadcast.on('change', onBroadcast);
  stops.push(() => broadcast.off('change', onBroadcast));
  stops.push(
    cluster.subscribe(BROADCAST_TOPIC, (m) => {
      const b = (m as { broadcast?: unknown }).broadcast;
      if (b === null || isBroadcast(b)) broadcast.receive(b);
    }),
  );

  stops.push(
    cluster.onResync(() => {
      audit.reload().catch(onError);
      broadcast.get().then((b) => broadcast.receive(b), onError);
    }),
  );
  return () => {
    for (const s of stops.splice(0)) s();
  };
}

function isAuditEntry(m: unknown): m is AuditEntry {
  const e = m as Partial<AuditEntry> | null;
  return typeof e === 'object' && e !== null && typeof e.id === 'string' && typeof e.at === 'number';
}

function isBroadcast(b: unknown): b is Broadcast {
  const x = b as Partial<Broadcast> | null;
  return typeof x === 'object' && x !== null && typeof x.message === 'string' && typeof x.at === 'number';
}
