/** Expected strings are CPython 3.11 output (`repr`, `str(ex)`), checked with a real interpreter. */
import { describe, expect, it } from 'vitest';
import {
  PyException,
  pyBool,
  pyEquals,
  pyFloat,
  pyFloatRepr,
  pyGreater,
  pyIn,
  pyInt,
  pyLess,
  pyRepr,
  pyStr,
  pyStrRepr,
} from './python-format.js';

const raises = (fn: () => unknown): [string, string] => {
  try {
    fn();
  } catch (err) {
    if (err instanceof PyException) return [err.pyType, err.message];
    throw err;
  }
  throw new Error('did not raise');
};

describe('repr and str', () => {
  it('formats floats like repr(float)', () => {
    const cases: [number, string][] = [
      [0, '0.0'],
      [-0, '-0.0'],
      [1, '1.0'],
      [0.1, '0.1'],
      [1e16, '1e+16'],
      [1.5e16, '1.5e+16'],
      [1e15, '1000000000000000.0'],
      [1e-5, '1e-05'],
      [0.0001, '0.0001'],
      [123456789.123, '123456789.123'],
      [2.5e-7, '2.5e-07'],
      [1 / 3, '0.3333333333333333'],
      [5e-324, '5e-324'],
      [1.7976931348623157e308, '1.7976931348623157e+308'],
      [NaN, 'nan'],
      [-Infinity, '-inf'],
    ];
    for (const [n, s] of cases) expect([n, pyFloatRepr(n)]).toEqual([n, s]);
  });

  it('formats strings like repr(str)', () => {
    const cases: [string, string][] = [
      ['abc', "'abc'"],
      ["it's", `"it's"`],
      ['say "hi"', `'say "hi"'`],
      [`both ' and "`, `'both \\' and "'`],
      ['tab\tnl\n', "'tab\\tnl\\n'"],
      ['\u0000\u007f', "'\\x00\\x7f'"],
      ['é ü', "'é ü'"],
      ['\u00a0nbsp', "'\\xa0nbsp'"],
      ['\u2028', "'\\u2028'"],
      ['emoji😀', "'emoji😀'"],
      ['back\\slash', "'back\\\\slash'"],
    ];
    for (const [v, s] of cases) expect(pyStrRepr(v)).toBe(s);
  });

  it('formats containers and scalars like str() and repr()', () => {
    expect(pyStr(['nearest-exact', 'bilinear', 1, 2.5, true, null])).toBe(
      "['nearest-exact', 'bilinear', 1, 2.5, True, None]",
    );
    expect(pyStr({ a: 1, "b'": [] })).toBe(`{'a': 1, "b'": []}`);
    expect(pyStr('plain')).toBe('plain');
    expect(pyRepr('plain')).toBe("'plain'");
    expect(pyStr(2 ** 64)).toBe('18446744073709551616');
    expect(pyStr(1e21)).toBe('1000000000000000000000');
  });
});

describe('conversions', () => {
  it('int() and float() accept what Python accepts', () => {
    expect([pyInt('12'), pyInt('+3'), pyInt(' 7 '), pyInt('1_000'), pyInt('0012'), pyInt('-0')]).toEqual([
      12, 3, 7, 1000, 12, 0,
    ]);
    expect([pyInt(2.9), pyInt(-2.9), pyInt(true)]).toEqual([2, -2, 1]);
    expect([
      pyFloat('1.5e3'),
      pyFloat('.5'),
      pyFloat('5.'),
      pyFloat('1_0.5'),
      pyFloat('-Infinity'),
      pyFloat(false),
    ]).toEqual([1500, 0.5, 5, 10.5, -Infinity, 0]);
    expect(Number.isNaN(pyFloat('nan'))).toBe(true);
    for (const bad of ['1__0', '_1', '1_', '2.5', '', 'abc']) expect(() => pyInt(bad)).toThrow(PyException);
    for (const bad of ['1e1_', 'infinit', '1.2.3']) expect(() => pyFloat(bad)).toThrow(PyException);
  });

  it("raises CPython's exceptions", () => {
    expect(raises(() => pyInt(null))).toEqual([
      'TypeError',
      "int() argument must be a string, a bytes-like object or a real number, not 'NoneType'",
    ]);
    expect(raises(() => pyInt({}))).toEqual([
      'TypeError',
      "int() argument must be a string, a bytes-like object or a real number, not 'dict'",
    ]);
    expect(raises(() => pyInt(' 2.5 '))).toEqual([
      'ValueError',
      "invalid literal for int() with base 10: ' 2.5 '",
    ]);
    expect(raises(() => pyFloat(null))).toEqual([
      'TypeError',
      "float() argument must be a string or a real number, not 'NoneType'",
    ]);
    expect(raises(() => pyFloat([1]))).toEqual([
      'TypeError',
      "float() argument must be a string or a real number, not 'list'",
    ]);
    expect(raises(() => pyFloat('abc'))).toEqual(['ValueError', "could not convert string to float: 'abc'"]);
    expect(raises(() => pyInt('9'.repeat(4301)))[1]).toMatch(/^Exceeds the limit \(4300 digits\)/);
  });

  it('bool() never raises', () => {
    expect([
      pyBool(''),
      pyBool('false'),
      pyBool(0),
      pyBool(NaN),
      pyBool([]),
      pyBool({ a: 1 }),
      pyBool(null),
    ]).toEqual([false, true, false, true, false, true, false]);
  });
});

describe('comparisons', () => {
  it('== and in follow Python', () => {
    expect(pyEquals(true, 1)).toBe(true);
    expect(pyEquals(1, 1.0)).toBe(true);
    expect(pyEquals('1', 1)).toBe(false);
    expect(pyEquals([1, { a: null }], [1, { a: null }])).toBe(true);
    expect(pyIn(0, [false])).toBe(true);
    expect(pyIn('a', ['b'])).toBe(false);
  });

  it('< and > raise TypeError for unorderable types', () => {
    expect(pyLess(1, 2.5)).toBe(true);
    expect(pyGreater('b', 'a')).toBe(true);
    expect(pyLess([1, 2], [1, 3])).toBe(true);
    expect(pyLess(NaN, 1)).toBe(false);
    expect(raises(() => pyLess('a', 1))).toEqual([
      'TypeError',
      "'<' not supported between instances of 'str' and 'int'",
    ]);
    expect(raises(() => pyGreater(1, null))).toEqual([
      'TypeError',
      "'>' not supported between instances of 'int' and 'NoneType'",
    ]);
  });
});
