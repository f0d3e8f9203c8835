import { describe, expect, it } from 'vitest';
import { chooseEncoding } from './accept-encoding.js';

const both = ['br', 'gzip'] as const;

describe('chooseEncoding', () => {
  it('prefers brotli, then gzip, as browsers offer them', () => {
    expect(chooseEncoding('gzip, deflate, br, zstd', both)).toBe('br');
    expect(chooseEncoding('gzip, deflate', both)).toBe('gzip');
    expect(chooseEncoding('gzip, deflate, br', ['gzip'])).toBe('gzip');
  });

  it('sends the file as it is without the header, or when nothing offered is stored', () => {
    expect(chooseEncoding(undefined, both)).toBe('identity');
    expect(chooseEncoding('', both)).toBe('identity');
    expect(chooseEncoding('deflate, zstd', both)).toBe('identity');
    expect(chooseEncoding('identity', both)).toBe('identity');
    expect(chooseEncoding('br, gzip', [])).toBe('identity');
  });

  it('honours q-values: q=0 refuses, a higher q wins', () => {
    expect(chooseEncoding('br;q=0, gzip', both)).toBe('gzip');
    expect(chooseEncoding('br;q=0.5, gzip;q=0.8', both)).toBe('gzip');
    expect(chooseEncoding('br;q=0.8, gzip;q=0.8', both)).toBe('br');
    expect(chooseEncoding('br;q=0, gzip;q=0', both)).toBe('identity');
    expect(chooseEncoding('BR ; Q=1', both)).toBe('br');
  });

  it('reads * as every coding not named', () => {
    expect(chooseEncoding('*', both)).toBe('br');
    expect(chooseEncoding('br;q=0, *', both)).toBe('gzip');
    expect(chooseEncoding('*;q=0', both)).toBe('identity');
    expect(chooseEncoding('x-gzip', both)).toBe('gzip');
  });

  it('ignores an absurdly long header', () => {
    expect(chooseEncoding(`${'x,'.repeat(1000)}br`, both)).toBe('identity');
  });
});
