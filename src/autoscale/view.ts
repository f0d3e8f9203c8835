/**
 * The autoscaler as the dashboard, `/api/v1/autoscale` and the alerts see it. Types only,
 * importing nothing: the dashboard's browser code (src/admin/ui) reads them too.
 */

export interface DecisionRecord {
  at: number;
  action: 'start' | 'stop' | 'hold' | 'alert' | 'start_failed' | 'stop_failed' | 'ready' | 'gone';
  reason: string;
  instance?: string;
}

export interface AutoscaleView {
  provider: string;
  instanceType: string;
  dryRun: boolean;
  minWorkers: number;
  maxWorkers: number;
  instances: {
    name: string;
    id: string | null;
    phase: 'requested' | 'starting' | 'ready' | 'stopping';
    requestedAt: number;
    readyAt: number | null;
    held: number;
    /** Seconds until it is probably ready (starting ones, when start times were measured). */
    etaSeconds: number | null;
  }[];
  /** Typical start time of this provider and instance type, measured; null before the first. */
  startEstimateSeconds: number | null;
  startsMeasured: number;
  /** A GPU is on its way: shown to waiting participants. */
  starting: { etaSeconds: number | null } | null;
  hold: { count: number; until: number } | null;
  stopAll: boolean;
  usage: {
    todaySeconds: number;
    todayCost: number;
    pricePerHour: number;
    budgetSeconds: number;
    /** GPU time and cost of each participant's finished jobs (all days), costliest first, at most 50. */
    participants: { participant: string; gpuSeconds: number; cost: number }[];
  };
  decisions: DecisionRecord[];
}

export interface AutoscaleAlert {
  event: 'gpu_start_failed' | 'budget_near' | 'budget_reached' | 'provider_error';
  title: string;
  message: string;
  details: Record<string, unknown>;
}
