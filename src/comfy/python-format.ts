/**
 * Python semantics that ComfyUI's error messages leak: `str()` / `repr()` of JSON values, `int()`,
 * `float()` and `bool()` conversions and their exception messages, `==` and `<` between values.
 * `validate-prompt.ts` uses them to format error bodies exactly as ComfyUI (CPython 3.11) does.
 *
 * One unavoidable gap: JSON parsed in JavaScript no longer knows whether `1.0` was a float, so a
 * whole JSON number counts as a Python `int` unless the caller knows better (see {@link pyFloatRepr}).
 */

/** A Python exception raised while emulating ComfyUI code. `message` is what `str(ex)` prints. */
export class PyException extends Error {
  /** The Python class name, e.g. `KeyError` (what ComfyUI's `full_type_name` gives for builtins). */
  readonly pyType: string;
  /** Names of the emulated Python functions the exception passed through, innermost last. */
  readonly frames: string[];
  constructor(pyType: string, message: string, frames: string[] = []) {
    super(message);
    this.name = 'PyException';
    this.pyType = pyType;
    this.frames = frames;
  }
}

export type PyTypeName = 'NoneType' | 'bool' | 'int' | 'float' | 'str' | 'list' | 'dict';

/** The Python type a JSON value decodes to (`json.loads`). Whole numbers count as `int`. */
export function pyTypeName(v: unknown): PyTypeName {
  if (v === null || v === undefined) return 'NoneType';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (Array.isArray(v)) return 'list';
  return 'dict';
}

/** `repr(int)`: whole numbers without exponent notation, even beyond 2^53. */
export function pyIntRepr(n: number | bigint): string {
  if (typeof n === 'bigint') return n.toString();
  if (!Number.isFinite(n)) return pyFloatRepr(n);
  return BigInt(Math.trunc(n)).toString();
}

/** `repr(float)`: shortest round-trip digits, exponent below 1e-4 and from 1e16, always a `.0`. */
export function pyFloatRepr(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (n === Infinity) return 'inf';
  if (n === -Infinity) return '-inf';
  if (n === 0) return Object.is(n, -0) ? '-0.0' : '0.0';
  const sign = n < 0 ? '-' : '';
  // toExponential() without an argument gives the shortest digits that round-trip, like Python.
  const [mantissa = '0', expText = '0'] = Math.abs(n).toExponential().split('e');
  const exp = Number(expText);
  const digits = mantissa.replace('.', '');
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intLen = exp + 1;
  if (digits.length <= intLen) return `${sign}${digits}${'0'.repeat(intLen - digits.length)}.0`;
  return `${sign}${digits.slice(0, intLen)}.${digits.slice(intLen)}`;
}

function isPrintable(cp: number): boolean {
  if (cp === 0x20) return true;
  const ch = String.fromCodePoint(cp);
  return !/[\p{C}\p{Z}]/u.test(ch);
}

/** `repr(str)`: single quotes unless the text holds `'` and no `"`; escapes as CPython does. */
export function pyStrRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (let i = 0; i < s.length; i++) {
    const cp = s.codePointAt(i) ?? 0;
    if (cp > 0xffff) i++;
    if (cp === 0x5c) out += '\\\\';
    else if (String.fromCharCode(cp) === quote) out += `\\${quote}`;
    else if (cp === 0x09) out += '\\t';
    else if (cp === 0x0a) out += '\\n';
    else if (cp === 0x0d) out += '\\r';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp < 0x7f || isPrintable(cp)) out += String.fromCodePoint(cp);
    else if (cp <= 0xff) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp <= 0xffff) out += `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += `\\U${cp.toString(16).padStart(8, '0')}`;
  }
  return out + quote;
}

/** `repr(value)` of a JSON value as Python sees it after `json.loads`. */
export function pyRepr(v: unknown): string {
  switch (pyTypeName(v)) {
    case 'NoneType':
      return 'None';
    case 'bool':
      return v ? 'True' : 'False';
    case 'int':
      return pyIntRepr(v as number | bigint);
    case 'float':
      return pyFloatRepr(v as number);
    case 'str':
      return pyStrRepr(v as string);
    case 'list':
      return `[${(v as unknown[]).map(pyRepr).join(', ')}]`;
    case 'dict':
      return `{${Object.entries(v as Record<string, unknown>)
        .map(([k, x]) => `${pyStrRepr(k)}: ${pyRepr(x)}`)
        .join(', ')}}`;
  }
}

/** `str(value)`: like `repr` except that a top-level string is itself. */
export function pyStr(v: unknown): string {
  return typeof v === 'string' ? v : pyRepr(v);
}

/** Python `a == b` for JSON values (`True == 1`, `1 == 1.0`, deep for lists and dicts). */
export function pyEquals(a: unknown, b: unknown): boolean {
  const ta = pyTypeName(a);
  const tb = pyTypeName(b);
  const numeric = (t: PyTypeName) => t === 'bool' || t === 'int' || t === 'float';
  if (numeric(ta) && numeric(tb)) return Number(a) === Number(b);
  if (ta !== tb) return false;
  switch (ta) {
    case 'NoneType':
      return true;
    case 'str':
      return a === b;
    case 'list': {
      const la = a as unknown[];
      const lb = b as unknown[];
      return la.length === lb.length && la.every((x, i) => pyEquals(x, lb[i]));
    }
    case 'dict': {
      const da = a as Record<string, unknown>;
      const db = b as Record<string, unknown>;
      const ka = Object.keys(da);
      return (
        ka.length === Object.keys(db).length &&
        ka.every((k) => Object.prototype.hasOwnProperty.call(db, k) && pyEquals(da[k], db[k]))
      );
    }
    default:
      return false;
  }
}

/** Python `value in container` for a list container. */
export function pyIn(value: unknown, container: readonly unknown[]): boolean {
  return container.some((x) => pyEquals(x, value));
}

function cmp(op: '<' | '>', a: unknown, b: unknown): number {
  const ta = pyTypeName(a);
  const tb = pyTypeName(b);
  const numeric = (t: PyTypeName) => t === 'bool' || t === 'int' || t === 'float';
  if (numeric(ta) && numeric(tb)) {
    const x = Number(a);
    const y = Number(b);
    return x < y ? -1 : x > y ? 1 : x === y ? 0 : NaN;
  }
  if (ta === 'str' && tb === 'str') {
    const x = a as string;
    const y = b as string;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (ta === 'list' && tb === 'list') {
    const la = a as unknown[];
    const lb = b as unknown[];
    for (let i = 0; i < Math.min(la.length, lb.length); i++) {
      if (!pyEquals(la[i], lb[i])) return cmp(op, la[i], lb[i]);
    }
    return la.length - lb.length;
  }
  throw new PyException('TypeError', `'${op}' not supported between instances of '${ta}' and '${tb}'`);
}

/** Python `a < b`; raises `TypeError` like CPython for unorderable types. */
export function pyLess(a: unknown, b: unknown): boolean {
  return cmp('<', a, b) < 0;
}

/** Python `a > b`; raises `TypeError` like CPython for unorderable types. */
export function pyGreater(a: unknown, b: unknown): boolean {
  return cmp('>', a, b) > 0;
}

/** What `str.strip()` removes: Unicode whitespace plus the ASCII separators 0x1c-0x1f. */
// eslint-disable-next-line no-control-regex
const PY_WS = /^[\s\u001c-\u001f]+|[\s\u001c-\u001f]+$/g;
const DIGITS = '\\d(?:_?\\d)*';
const INT_RE = new RegExp(`^[+-]?${DIGITS}$`);
const FLOAT_RE = new RegExp(
  `^[+-]?(?:(?:${DIGITS}(?:\\.(?:${DIGITS})?)?|\\.${DIGITS})(?:[eE][+-]?${DIGITS})?|inf(?:inity)?|nan)$`,
  'i',
);
/** CPython 3.11's default `sys.get_int_max_str_digits()`. */
const INT_MAX_STR_DIGITS = 4300;

/** Python `int(value)`. Returns a JS number (precision ends at 2^53, as JSON parsing already does). */
export function pyInt(v: unknown): number {
  const t = pyTypeName(v);
  if (t === 'bool') return v ? 1 : 0;
  if (t === 'int') return v as number;
  if (t === 'float') return Math.trunc(v as number);
  if (t === 'str') {
    const s = (v as string).replace(PY_WS, '');
    if (!INT_RE.test(s)) {
      throw new PyException(
        'ValueError',
        `invalid literal for int() with base 10: ${pyStrRepr(v as string)}`,
      );
    }
    const digits = s.replace(/[+_-]/g, '').length;
    if (digits > INT_MAX_STR_DIGITS) {
      throw new PyException(
        'ValueError',
        `Exceeds the limit (${INT_MAX_STR_DIGITS} digits) for integer string conversion: value has ${digits} digits; use sys.set_int_max_str_digits() to increase the limit`,
      );
    }
    const n = Number(s.replace(/_/g, ''));
    return Object.is(n, -0) ? 0 : n;
  }
  throw new PyException(
    'TypeError',
    `int() argument must be a string, a bytes-like object or a real number, not '${t}'`,
  );
}

/** Python `float(value)`. */
export function pyFloat(v: unknown): number {
  const t = pyTypeName(v);
  if (t === 'bool') return v ? 1 : 0;
  if (t === 'int' || t === 'float') return v as number;
  if (t === 'str') {
    const s = (v as string).replace(PY_WS, '');
    if (!FLOAT_RE.test(s)) {
      throw new PyException('ValueError', `could not convert string to float: ${pyStrRepr(v as string)}`);
    }
    const body = s.replace(/^[+-]/, '').toLowerCase();
    const neg = s.startsWith('-');
    if (body === 'nan') return NaN;
    if (body.startsWith('inf')) return neg ? -Infinity : Infinity;
    return Number(s.replace(/_/g, ''));
  }
  throw new PyException('TypeError', `float() argument must be a string or a real number, not '${t}'`);
}

/** Python `bool(value)`: never raises. */
export function pyBool(v: unknown): boolean {
  switch (pyTypeName(v)) {
    case 'NoneType':
      return false;
    case 'bool':
      return v as boolean;
    case 'int':
    case 'float':
      return (v as number) !== 0; // NaN is truthy in Python too
    case 'str':
      return (v as string).length > 0;
    case 'list':
      return (v as unknown[]).length > 0;
    case 'dict':
      return Object.keys(v as object).length > 0;
  }
}
