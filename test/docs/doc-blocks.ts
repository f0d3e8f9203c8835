/**
 * Reads the shell blocks of the project's Markdown docs, and the `comfy-multi` invocations in them,
 * so tests can check that what the docs tell an instructor to paste really works.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';

export interface ShellBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  text: string;
  /** From a `<!-- ci: run -->` or `<!-- ci: serve -->` comment just above the block. */
  ci: 'run' | 'serve' | null;
}

export const REPO = new URL('../../', import.meta.url).pathname;

/** README.md and every docs/*.md. */
export function docFiles(): string[] {
  return [
    'README.md',
    ...readdirSync(join(REPO, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
}

export function shellBlocks(file: string): ShellBlock[] {
  const lines = readFileSync(join(REPO, file), 'utf8').split('\n');
  const blocks: ShellBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(sh|bash|shell)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    let j = i + 1;
    const body: string[] = [];
    while (j < lines.length && !/^\s*```\s*$/.test(lines[j]!)) body.push(lines[j++]!.slice(indent));
    let k = i - 1;
    while (k >= 0 && lines[k]!.trim() === '') k--;
    const marker = k >= 0 ? /^\s*<!--\s*ci:\s*(run|serve)\s*-->\s*$/.exec(lines[k]!) : null;
    blocks.push({ file, line: i + 1, text: body.join('\n'), ci: (marker?.[1] as 'run' | 'serve') ?? null });
    i = j;
  }
  return blocks;
}

/** Splits one shell command line into words: quotes and backslash escapes, no expansion. */
function words(segment: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: '"' | "'" | null = null;
  let any = false;
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      any = true;
    } else if (c === '\\' && i + 1 < segment.length) {
      cur += segment[++i];
      any = true;
    } else if (/\s/.test(c)) {
      if (cur || any) out.push(cur);
      cur = '';
      any = false;
    } else cur += c;
  }
  if (cur || any) out.push(cur);
  return out;
}

/** Cuts a line at shell operators and comments (outside quotes). */
function segments(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = null;
      cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      cur += c;
    } else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) break;
    else if (c === '|' || c === ';' || c === '&' || c === '(' || c === ')' || c === '`') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.map((s) => s.trim()).filter(Boolean);
}

export interface Invocation {
  where: string;
  args: string[];
}

/** Every `comfy-multi …` (also `npx comfy-multi`, `node bin/comfy-multi.js`) in a block. */
export function invocations(block: ShellBlock): Invocation[] {
  const out: Invocation[] = [];
  // Continuation lines join their command; heredoc bodies are data, not commands.
  const lines = block.text.replace(/\\\n/g, ' ').split('\n');
  let heredoc: string | null = null;
  lines.forEach((raw, n) => {
    if (heredoc) {
      if (raw.trim() === heredoc) heredoc = null;
      return;
    }
    const h = /<<-?\s*'?"?(\w+)'?"?/.exec(raw);
    if (h) heredoc = h[1]!;
    for (const seg of segments(raw)) {
      const w = words(seg);
      let i = 0;
      while (i < w.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(w[i]!)) i++;
      if (w[i] === 'sudo' || w[i] === 'npx' || w[i] === 'exec') i++;
      if (w[i] === 'node' && w[i + 1]?.endsWith('bin/comfy-multi.js')) i++;
      if (w[i] === 'comfy-multi' || w[i]?.endsWith('bin/comfy-multi.js')) {
        out.push({ where: `${block.file}:${block.line + 1 + n}`, args: w.slice(i + 1) });
      }
    }
  });
  return out;
}

/** Why `args` would not parse as a comfy-multi command, or null when it names a real command and options. */
export function checkInvocation(program: Command, args: string[]): string | null {
  let cmd = program;
  let i = 0;
  while (cmd.commands.length > 0 && i < args.length && !args[i]!.startsWith('-')) {
    const name = args[i]!;
    const next = cmd.commands.find((c) => c.name() === name || c.aliases().includes(name));
    if (!next) return `no command '${[...args.slice(0, i), name].join(' ')}'`;
    cmd = next;
    i++;
  }
  if (cmd.commands.length > 0 && cmd !== program) {
    if (args.slice(i).some((a) => a === '--help' || a === '-h')) return null;
    return `'${args.slice(0, i).join(' ')}' needs a subcommand`;
  }
  for (const a of args.slice(i)) {
    if (!a.startsWith('--')) continue;
    const flag = a.split('=')[0]!;
    if (flag === '--help' || (cmd === program && flag === '--version')) continue;
    if (!cmd.options.some((o) => o.long === flag))
      return `'${args.slice(0, i).join(' ')}' has no option ${flag}`;
  }
  return null;
}
