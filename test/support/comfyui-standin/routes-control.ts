/**
 * The stand-in's own control plane (not part of ComfyUI), for tests that run the stand-in in
 * another process: `GET|POST /standin/faults` and `GET /standin/state`. These routes keep
 * answering while the ComfyUI routes are frozen (hang) or return 503.
 */
import { FaultRequestSchema, type FaultController } from './faults.js';
import { reply, type Router } from './http-util.js';

export interface ControlDeps {
  faults: FaultController;
  state(): unknown;
}

export function addControlRoutes(router: Router, deps: ControlDeps): void {
  router.get('/standin/faults', () => reply.json(deps.faults.snapshot()), false);
  router.post(
    '/standin/faults',
    async (ctx) => {
      let body: unknown;
      try {
        body = await ctx.json();
      } catch {
        return reply.json({ error: 'body must be JSON' }, 400);
      }
      const parsed = FaultRequestSchema.safeParse(body);
      if (!parsed.success)
        return reply.json({ error: 'invalid fault request', issues: parsed.error.issues }, 400);
      // Reachability changes wait until this answer is out: 'refuse' drops every connection,
      // this one included.
      const { unreachable, ...now } = parsed.data;
      await deps.faults.apply(now);
      if (unreachable === undefined) return reply.json(deps.faults.snapshot());
      const mode =
        typeof unreachable === 'object' ? unreachable.mode : unreachable === true ? 'refuse' : unreachable;
      return {
        ...reply.json({ ...deps.faults.snapshot(), unreachable: mode }),
        after: () => void deps.faults.apply({ unreachable }).catch(() => undefined),
      };
    },
    false,
  );
  router.get('/standin/state', () => reply.json(deps.state()), false);
}
