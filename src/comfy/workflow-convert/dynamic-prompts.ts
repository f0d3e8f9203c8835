/**
 * The frontend's `processDynamicPrompt` (shared-frontend-utils/formatUtil.ts, v1.45), which it
 * applies when queueing to every STRING widget whose input spec has `dynamicPrompts: true`
 * (CLIPTextEncode's text, ...): C-style comments (`// …`, `/* … *\/`) are removed and each
 * `{a|b|c}` group (nested allowed) is replaced by one option chosen at random; `\{`, `\|`, `\}`
 * stay as literal characters. Note that `//` in a URL starts a comment too, as in the frontend.
 */
export function processDynamicPrompt(text: string, random: () => number = Math.random): string {
  const input = text.replace(/\/\*[\s\S]*?\*\/|\/\/.*/g, '');
  let i = 0;
  const escape = () => `\\${input[i++] ?? ''}`;

  function choice(): string {
    const options: string[] = [];
    let current = '';
    let depth = 0;
    while (i < input.length) {
      const c = input[i++]!;
      if (c === '\\') {
        current += escape();
        continue;
      } else if (c === '{') depth++;
      else if (c === '}') {
        if (!depth) break;
        depth--;
      } else if (c === '|' && !depth) {
        options.push(current);
        current = '';
        continue;
      }
      current += c;
    }
    options.push(current);
    return processDynamicPrompt(options[Math.floor(random() * options.length)]!, random);
  }

  let result = '';
  while (i < input.length) {
    const c = input[i++]!;
    if (c === '\\') result += escape();
    else if (c === '{') result += choice();
    else result += c;
  }
  return result.replace(/\\([{}|])/g, '$1');
}
