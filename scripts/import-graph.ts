/**
 * The import graph of our own sources, for scripts/import-cycles.test.ts.
 *
 * Imports are read with the TypeScript parser (not regexes), so comments, strings and template
 * literals that merely look like imports are ignored. An edge is `type` only when it disappears from
 * the emitted JavaScript: `import type …`, `export type … from`, and `import('…')` in a type position.
 * Because tsconfig sets `verbatimModuleSyntax`, `import { type A } from './a.js'` still emits
 * `import {} from './a.js'` and therefore loads the module: that is a runtime edge.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

export type EdgeKind = 'runtime' | 'type';

/** One import or re-export statement with a literal specifier. */
export interface ImportRef {
  specifier: string;
  kind: EdgeKind;
  /** 1-based line of the statement, for messages. */
  line: number;
}

/** Every import, re-export and literal `import()` of one source text. */
export function parseImports(fileName: string, text: string): ImportRef[] {
  const kindOfScript = fileName.endsWith('.tsx') ? ts.ScriptKind.TSX : ts.ScriptKind.TS;
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, kindOfScript);
  const refs: ImportRef[] = [];
  const add = (literal: ts.Node, kind: EdgeKind): void => {
    if (!ts.isStringLiteralLike(literal)) return;
    const line = source.getLineAndCharacterOfPosition(literal.getStart(source)).line + 1;
    refs.push({ specifier: literal.text, kind, line });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      add(node.moduleSpecifier, node.importClause?.isTypeOnly ? 'type' : 'runtime');
    } else if (ts.isExportDeclaration(node)) {
      if (node.moduleSpecifier) add(node.moduleSpecifier, node.isTypeOnly ? 'type' : 'runtime');
    } else if (ts.isImportEqualsDeclaration(node)) {
      const ref = node.moduleReference;
      if (ts.isExternalModuleReference(ref)) add(ref.expression, node.isTypeOnly ? 'type' : 'runtime');
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [first] = node.arguments;
      if (first) add(first, 'runtime');
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument;
      if (ts.isLiteralTypeNode(arg)) add(arg.literal, 'type');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return refs;
}

const SOURCE_EXT = /\.(ts|tsx|mts|cts)$/;

/** Every non-test TypeScript file under `dir` (absolute paths, sorted). */
export function listSources(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && entry.name !== 'dist') walk(full);
      } else if (SOURCE_EXT.test(entry.name) && !/\.test\.tsx?$/.test(entry.name)) {
        out.push(full);
      }
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * The file a relative specifier names, following NodeNext's rules as TypeScript applies them to
 * sources: `./a.js` is `./a.ts` (or `.tsx`), `./a.mjs` is `./a.mts`. Returns undefined for bare
 * specifiers (packages, `node:`), and for relative ones that name no file.
 */
export function resolveSpecifier(fromFile: string, specifier: string): string | undefined {
  if (!specifier.startsWith('./') && !specifier.startsWith('../')) return undefined;
  const target = path.resolve(path.dirname(fromFile), specifier);
  const candidates: string[] = [];
  const ext = path.extname(target);
  const stem = target.slice(0, target.length - ext.length);
  if (ext === '.js' || ext === '.jsx') candidates.push(`${stem}.ts`, `${stem}.tsx`);
  else if (ext === '.mjs') candidates.push(`${stem}.mts`);
  else if (ext === '.cjs') candidates.push(`${stem}.cts`);
  candidates.push(target, `${target}.ts`, `${target}.tsx`, path.join(target, 'index.ts'));
  return candidates.find((c) => existsSync(c) && statSync(c).isFile());
}

/** An edge of the graph: `from` imports `to`. */
export interface Edge {
  from: string;
  to: string;
  kind: EdgeKind;
  line: number;
}

export interface ImportGraph {
  files: string[];
  edges: Edge[];
  /** Relative specifiers that named no file: the checker would be blind to them. */
  unresolved: { file: string; specifier: string; line: number }[];
}

/** Reads every source under `dir` and resolves its relative imports. */
export function buildImportGraph(dir: string): ImportGraph {
  const files = listSources(dir);
  const edges: Edge[] = [];
  const unresolved: ImportGraph['unresolved'] = [];
  for (const file of files) {
    for (const ref of parseImports(file, readFileSync(file, 'utf8'))) {
      const to = resolveSpecifier(file, ref.specifier);
      if (to) {
        if (SOURCE_EXT.test(to)) edges.push({ from: file, to, kind: ref.kind, line: ref.line });
      } else if (ref.specifier.startsWith('.')) {
        unresolved.push({ file, specifier: ref.specifier, line: ref.line });
      }
    }
  }
  return { files, edges, unresolved };
}

/** Tarjan's algorithm: the strongly connected components that hold a cycle (size > 1, or a self-import). */
export function cyclicComponents(nodes: readonly string[], edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>(nodes.map((n) => [n, []]));
  for (const e of edges) next.get(e.from)?.push(e.to);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  let counter = 0;
  const connect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      const selfLoop = component.length === 1 && (next.get(v) ?? []).includes(v);
      if (component.length > 1 || selfLoop) components.push(component.sort());
    }
  };
  for (const v of nodes) if (!index.has(v)) connect(v);
  return components.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/**
 * Concrete cycles (each a chain `a → b → … → a`) that together use every edge inside one component,
 * so the message shows every import that would have to go. Each is an edge plus the shortest way back.
 */
export function cycleChains(component: readonly string[], edges: readonly Edge[]): string[][] {
  const members = new Set(component);
  const inner = edges.filter((e) => members.has(e.from) && members.has(e.to));
  const next = new Map<string, string[]>();
  for (const e of inner) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const shortestPath = (from: string, to: string): string[] => {
    const previous = new Map<string, string>([[from, from]]);
    const queue = [from];
    while (queue.length > 0) {
      const v = queue.shift()!;
      if (v === to) break;
      for (const w of next.get(v) ?? []) {
        if (!previous.has(w)) {
          previous.set(w, v);
          queue.push(w);
        }
      }
    }
    const route = [to];
    while (route[0] !== from) route.unshift(previous.get(route[0]!)!);
    return route;
  };
  const covered = new Set<string>();
  const chains: string[][] = [];
  const key = (a: string, b: string): string => `${a}\u0000${b}`;
  for (const e of [...inner].sort((a, b) => key(a.from, a.to).localeCompare(key(b.from, b.to)))) {
    if (covered.has(key(e.from, e.to))) continue;
    const chain = [e.from, ...(e.from === e.to ? [e.to] : shortestPath(e.to, e.from))];
    for (let i = 0; i + 1 < chain.length; i++) covered.add(key(chain[i]!, chain[i + 1]!));
    chains.push(chain);
  }
  return chains;
}

/** Every cycle of the graph restricted to `kinds`, as chains of paths relative to `root`. */
export function findCycles(graph: ImportGraph, kinds: readonly EdgeKind[], root: string): string[][] {
  const edges = graph.edges.filter((e) => kinds.includes(e.kind));
  const rel = (f: string): string => path.relative(root, f).split(path.sep).join('/');
  return cyclicComponents(graph.files, edges).flatMap((component) =>
    cycleChains(component, edges).map((chain) => chain.map(rel)),
  );
}
