import type { FastifyInstance } from 'fastify';

/**
 * Which methods each route path answers, so that a request for an existing path with another
 * method gets 405 METHOD_NOT_ALLOWED and an `Allow` header instead of a 404 that suggests the
 * path does not exist. Filled by an onRoute hook. Catch-all wildcard routes (the frontend's
 * `/<user>/*`, `/assets/*`) are left out: they would make every path "allow" GET.
 */
export class RouteMethods {
  private readonly routes: { re: RegExp; methods: Set<string> }[] = [];
  private readonly byUrl = new Map<string, Set<string>>();

  add(method: string | string[], url: string): void {
    if (url.includes('*')) return;
    const key = url.length > 1 ? url.replace(/\/+$/, '') : url;
    let methods = this.byUrl.get(key);
    if (!methods) {
      methods = new Set();
      this.byUrl.set(key, methods);
      this.routes.push({ re: patternOf(key), methods });
    }
    for (const m of Array.isArray(method) ? method : [method]) methods.add(m.toUpperCase());
  }

  /** The methods some route answers for this path (query string ignored), sorted; [] when none. */
  allowed(url: string): string[] {
    const q = url.indexOf('?');
    let path = q < 0 ? url : url.slice(0, q);
    if (path.length > 1) path = path.replace(/\/+$/, '');
    const out = new Set<string>();
    for (const r of this.routes) if (r.re.test(path)) for (const m of r.methods) out.add(m);
    return [...out].sort();
  }
}

/** `/a/:b/c` → /^\/a\/[^/]+\/c$/ (a parameter is one non-empty segment, as the router sees it). */
function patternOf(url: string): RegExp {
  const body = url
    .split('/')
    .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${body}$`);
}

/** Collects every route registered on `app` (and its plugins) from now on. */
export function trackRouteMethods(app: FastifyInstance): RouteMethods {
  const table = new RouteMethods();
  app.addHook('onRoute', (route) => table.add(route.method, route.url));
  return table;
}
