/**
 * The autoscaler's figures in /metrics (registered into the admin metrics' own registry).
 * Read at scrape time from the autoscaler's view; decisions are counted as they happen.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Autoscaler } from './autoscaler.js';

export function registerAutoscaleMetrics(registry: Registry, autoscaler: Autoscaler): () => void {
  const registers = [registry];
  new Gauge({
    name: 'comfy_multi_autoscale_instances',
    help: 'GPU instances the autoscaler started, by phase (requested, starting, ready, stopping).',
    labelNames: ['phase'],
    registers,
    collect(this: Gauge<'phase'>) {
      this.reset();
      for (const p of ['requested', 'starting', 'ready', 'stopping'] as const) this.set({ phase: p }, 0);
      for (const i of autoscaler.view().instances) this.inc({ phase: i.phase });
    },
  });
  new Gauge({
    name: 'comfy_multi_autoscale_gpu_seconds_today',
    help: 'GPU time the autoscaler billed since midnight UTC (started to ended, as clouds bill).',
    registers,
    collect(this: Gauge) {
      this.set(autoscaler.view().usage.todaySeconds);
    },
  });
  new Gauge({
    name: 'comfy_multi_autoscale_cost_today',
    help: "Today's GPU time times AUTOSCALE_PRICE_PER_HOUR.",
    registers,
    collect(this: Gauge) {
      this.set(autoscaler.view().usage.todayCost);
    },
  });
  new Gauge({
    name: 'comfy_multi_autoscale_worker_gpu_seconds',
    help: 'GPU time per started worker (ended ones included, since the server started).',
    labelNames: ['worker'],
    registers,
    collect(this: Gauge<'worker'>) {
      this.reset();
      for (const [worker, s] of autoscaler.usageByWorker()) this.set({ worker }, Math.round(s));
    },
  });
  new Gauge({
    name: 'comfy_multi_autoscale_worker_cost',
    help: 'Cost of each started worker (its GPU time times the price per hour of its instance type), all days.',
    labelNames: ['worker', 'instance_type'],
    registers,
    collect(this: Gauge<'worker' | 'instance_type'>) {
      this.reset();
      const by = new Map<string, { type: string; cost: number }>();
      for (const r of autoscaler.costRows()) {
        if (r.kind !== 'worker') continue;
        const w = by.get(r.worker) ?? { type: r.instanceType, cost: 0 };
        w.cost += r.cost;
        by.set(r.worker, w);
      }
      for (const [worker, w] of by)
        this.set({ worker, instance_type: w.type }, Math.round(w.cost * 100) / 100);
    },
  });
  new Gauge({
    name: 'comfy_multi_autoscale_participant_gpu_seconds',
    help: "GPU time of each participant's finished jobs (claimed to finished), all days.",
    labelNames: ['user'],
    registers,
    collect(this: Gauge<'user'>) {
      this.reset();
      for (const p of autoscaler.cost.participants()) this.set({ user: p.participant }, p.gpuSeconds);
    },
  });
  new Gauge({
    name: 'comfy_multi_autoscale_participant_cost',
    help: "Cost of each participant's jobs: their GPU seconds times the price per hour of the instance type that ran them.",
    labelNames: ['user'],
    registers,
    collect(this: Gauge<'user'>) {
      this.reset();
      for (const p of autoscaler.cost.participants()) this.set({ user: p.participant }, p.cost);
    },
  });
  new Gauge({
    name: 'comfy_multi_autoscale_start_estimate_seconds',
    help: 'Median measured start time (start request to worker registered) of the provider and instance type; -1 before the first.',
    labelNames: ['provider', 'instance_type'],
    registers,
    collect(this: Gauge<'provider' | 'instance_type'>) {
      const v = autoscaler.view();
      this.set({ provider: v.provider, instance_type: v.instanceType }, v.startEstimateSeconds ?? -1);
    },
  });
  const decisions = new Counter({
    name: 'comfy_multi_autoscale_decisions_total',
    help: 'Autoscaler decisions and events by action (start, stop, hold, alert, start_failed, ready, gone, ...).',
    labelNames: ['action'],
    registers,
  });
  const onDecision = (d: { action: string }) => decisions.inc({ action: d.action });
  autoscaler.on('decision', onDecision);
  return () => autoscaler.off('decision', onDecision);
}
