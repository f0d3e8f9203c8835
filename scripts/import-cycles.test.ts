/**
 * No import cycles in src/. A cycle among runtime imports means some module is evaluated while
 * another it needs is still half-initialised (a `const` read too early throws, a class is undefined),
 * and it always means two modules that cannot be understood or changed apart. Type-only cycles
 * (`import type`) vanish from the emitted JavaScript, so they are reported here, not failed.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  buildImportGraph,
  cycleChains,
  cyclicComponents,
  findCycles,
  parseImports,
  resolveSpecifier,
  type Edge,
} from './import-graph.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const graph = buildImportGraph(path.join(root, 'src'));
const show = (chains: string[][]): string[] => chains.map((chain) => chain.join(' → '));

describe('import graph reader', () => {
  it('tells runtime imports from type-only ones and ignores look-alikes', () => {
    const refs = parseImports(
      'x.ts',
      [
        "import { a } from './a.js';",
        "import type { B } from './b.js';",
        "import { type C } from './c.js';", // verbatimModuleSyntax keeps `import {} from './c.js'`
        "import './d.js';",
        "export { e } from './e.js';",
        "export type { F } from './f.js';",
        "export * from './g.js';",
        "const h = await import('./h.js');",
        "let i: typeof import('./i.js').I;",
        "// import { no } from './comment.js';",
        'const s = "import { no } from \'./string.js\'";',
        'const dynamic = await import(someVariable);',
      ].join('\n'),
    );
    expect(refs.map((r) => [r.specifier, r.kind])).toEqual([
      ['./a.js', 'runtime'],
      ['./b.js', 'type'],
      ['./c.js', 'runtime'],
      ['./d.js', 'runtime'],
      ['./e.js', 'runtime'],
      ['./f.js', 'type'],
      ['./g.js', 'runtime'],
      ['./h.js', 'runtime'],
      ['./i.js', 'type'],
    ]);
    expect(refs.map((r) => r.line)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('resolves .js specifiers to the .ts sources and leaves packages alone', () => {
    const from = path.join(root, 'src', 'main.ts');
    expect(resolveSpecifier(from, './app.js')).toBe(path.join(root, 'src', 'app.ts'));
    expect(resolveSpecifier(from, 'fastify')).toBeUndefined();
    expect(resolveSpecifier(from, 'node:fs')).toBeUndefined();
  });

  it('finds every strongly connected component and a chain through each of its edges', () => {
    const e = (from: string, to: string): Edge => ({ from, to, kind: 'runtime', line: 1 });
    // a → b → c → a, c → d → c (one component of four), e → e, f → a (acyclic).
    const edges = [e('a', 'b'), e('b', 'c'), e('c', 'a'), e('c', 'd'), e('d', 'c'), e('e', 'e'), e('f', 'a')];
    const components = cyclicComponents(['a', 'b', 'c', 'd', 'e', 'f'], edges);
    expect(components).toEqual([['a', 'b', 'c', 'd'], ['e']]);
    expect(show(cycleChains(components[0]!, edges))).toEqual(['a → b → c → a', 'c → d → c']);
    expect(show(cycleChains(components[1]!, edges))).toEqual(['e → e']);
  });

  it('sees every relative import of src/', () => {
    expect(graph.unresolved).toEqual([]);
    // Guard against a reader that silently finds nothing.
    expect(graph.files.length).toBeGreaterThan(100);
    expect(graph.edges.length).toBeGreaterThan(graph.files.length);
  });
});

describe('src/', () => {
  it('has no import cycles among runtime imports', () => {
    const chains = show(findCycles(graph, ['runtime'], root));
    expect(chains, 'runtime import cycles: move what both sides need into a module of its own').toEqual([]);
  });

  it('reports cycles that exist only through type-only imports', () => {
    const rel = (f: string): string => path.relative(root, f).split(path.sep).join('/');
    const runtimeEdges = new Set(
      graph.edges.filter((e) => e.kind === 'runtime').map((e) => `${rel(e.from)} → ${rel(e.to)}`),
    );
    const typeOnly = findCycles(graph, ['runtime', 'type'], root).filter((chain) =>
      chain.slice(1).some((to, i) => !runtimeEdges.has(`${chain[i]} → ${to}`)),
    );
    // Reported, not failed: they cost nothing at runtime, but each still ties two modules together.
    if (typeOnly.length > 0) console.warn(`type-only import cycles:\n  ${show(typeOnly).join('\n  ')}`);
  });
});
