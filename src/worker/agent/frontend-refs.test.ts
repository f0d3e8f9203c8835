/** The pure half of the frontend crawl: which references a file has, and where they point. */
import { describe, expect, it } from 'vitest';
import {
  detectFrontendVersion,
  extractNumberedSeries,
  extractReferences,
  isCrawlablePath,
  resolveReference,
  textKind,
} from './frontend-refs.js';

describe('extractReferences', () => {
  it('finds HTML attributes, inline CSS and script strings', () => {
    const html = `<!doctype html><link rel="stylesheet" href="materialdesignicons.min.css">
      <link rel=icon href=/favicon.ico><img srcset="a.png 1x, ./b@2x.png 2x">
      <script type="module" crossorigin src="./assets/index-D4.js"></script>
      <a href="https://comfy.org/x.html">docs</a><a href="#top">top</a>
      <g mask="url(#comfy-mask-splash)"></g><style>body{background:url('./bg.png')}</style>
      <script>var x = 'assets/splash.svg';</script>`;
    expect(extractReferences(html, 'html').sort()).toEqual(
      [
        'materialdesignicons.min.css',
        '/favicon.ico',
        'a.png',
        './b@2x.png',
        './assets/index-D4.js',
        'https://comfy.org/x.html',
        './bg.png',
        'assets/splash.svg',
      ].sort(),
    );
  });

  it('finds CSS url() and @import, with queries and hashes kept for the resolver', () => {
    const css = `@import "./more.css";@font-face{src:url("./fonts/mdi.eot?v=7.4.47");
      src:url(./fonts/mdi.eot?#iefix&v=7.4.47) format("embedded-opentype"),url('/fonts/mdi.woff2')}
      .x{background:url(data:image/png;base64,AAAA)}`;
    expect(extractReferences(css, 'css').sort()).toEqual(
      [
        './more.css',
        './fonts/mdi.eot?v=7.4.47',
        './fonts/mdi.eot?#iefix&v=7.4.47',
        '/fonts/mdi.woff2',
      ].sort(),
    );
  });

  it('finds JS string literals that look like files with a known extension', () => {
    const js = `const __vite__mapDeps=(i,m=__vite__mapDeps,d=(m.f||(m.f=["assets/A-1.js","assets/A-1.css"])))=>i.map(i=>d[i]);
      import("./Lazy-2.js");import{a}from'../../scripts/app.js';const u=new URL(\`logo-3.svg\`,import.meta.url);
      const t=\`./locales/\${lang}/main.json\`;const api="api/prompt";const n="vue.runtime";const h="https://x.org/y.js";
      const q='./data.json?v=2';x="a"+b.js+"c";const s='it\\'s';const w="two words.js";`;
    expect(extractReferences(js, 'js').sort()).toEqual(
      [
        'assets/A-1.js',
        'assets/A-1.css',
        './Lazy-2.js',
        '../../scripts/app.js',
        'logo-3.svg',
        './data.json?v=2',
      ].sort(),
    );
  });
});

describe('extractNumberedSeries', () => {
  it('finds template literals that number a file, and nothing else', () => {
    const js = `f.value=\`/assets/images/favicon_progress_16x16/frame_\${Math.min(Math.max(0, Math.floor(p * n)), n - 1)}.png\`;
      a=\`clipspace-mask-\${timestamp}.png\`;b=\`/templates/\${id}.json\`;c=\`painter-\${id}-\${Date.now()}.png\`;
      d=\`\${asset.name}_preview.png\`;e=\`Job \${item.id}.json\`;g=\`icon-\${n}@2x.txt2\`;`;
    expect(extractNumberedSeries(js)).toEqual([
      { prefix: '/assets/images/favicon_progress_16x16/frame_', suffix: '.png' },
      { prefix: 'clipspace-mask-', suffix: '.png' },
    ]);
  });
});

describe('resolveReference', () => {
  it('resolves like a browser, trying bare paths against the root and the file folder', () => {
    expect(resolveReference('./assets/x.js', 'index.html')).toEqual(['assets/x.js']);
    expect(resolveReference('./Lazy.js', 'assets/index.js')).toEqual(['assets/Lazy.js']);
    expect(resolveReference('../fonts/a.woff2', 'assets/css/x.css')).toEqual(['assets/fonts/a.woff2']);
    expect(resolveReference('/icons/x.svg', 'assets/a/b.css')).toEqual(['icons/x.svg']);
    expect(resolveReference('assets/Chunk.js', 'assets/index.js')).toEqual([
      'assets/Chunk.js',
      'assets/assets/Chunk.js',
    ]);
    expect(resolveReference('assets/Chunk.js', 'index.html')).toEqual(['assets/Chunk.js']);
    expect(resolveReference('./fonts/mdi.eot?#iefix', 'm.css')).toEqual(['fonts/mdi.eot']);
    expect(resolveReference('a%20b.png', 'index.html')).toEqual(['a b.png']);
  });

  it('never leaves the site, its origin or the frontend, and skips ComfyUI routes', () => {
    expect(resolveReference('../../../etc/passwd.txt', 'assets/x.js')).toEqual([]);
    expect(resolveReference('/../secret.css', 'index.html')).toEqual([]);
    expect(resolveReference('https://cdn.example/x.js', 'index.html')).toEqual([]);
    expect(resolveReference('//cdn.example/x.js', 'index.html')).toEqual([]);
    expect(resolveReference('data:image/png;base64,AAAA', 'index.html')).toEqual([]);
    expect(resolveReference('..%2F..%2Fx.js', 'assets/a.js')).toEqual([]);
    expect(resolveReference('assets\\x.js', 'index.html')).toEqual([]);
    expect(resolveReference('.hidden/x.js', 'index.html')).toEqual([]);
    for (const api of [
      '/api/view.png',
      'templates/index.json',
      '/userdata/w.json',
      'view/x.png',
      '/ws/a.js',
    ]) {
      expect(resolveReference(api, 'index.html'), api).toEqual([]);
    }
    expect(resolveReference('#top', 'index.html')).toEqual([]);
    expect(isCrawlablePath('extensions/VHS/js/x.js')).toBe(true);
    expect(isCrawlablePath('assets/noextension')).toBe(false);
  });
});

describe('textKind and detectFrontendVersion', () => {
  it('reads HTML, CSS and JS-like files, by extension first', () => {
    expect(textKind('index.html')).toBe('html');
    expect(textKind('a.MJS')).toBe('js');
    expect(textKind('m.webmanifest')).toBe('js');
    expect(textKind('x.css')).toBe('css');
    expect(textKind('x.png', 'text/html')).toBeNull();
    expect(textKind('page', 'text/html; charset=utf-8')).toBe('html');
  });

  it('finds the version the frontend build stamps into its config', () => {
    expect(detectFrontendVersion('const a={app_title:"ComfyUI",app_version:"1.45.0"}')).toBe('1.45.0');
    expect(detectFrontendVersion("x.extra.frontendVersion='1.27.10-rc.1'")).toBe('1.27.10-rc.1');
    expect(detectFrontendVersion('const version="1.2.3"')).toBeNull();
  });
});
