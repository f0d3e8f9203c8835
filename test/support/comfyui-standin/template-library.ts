/**
 * A small stand-in for the `comfyui-workflow-templates` package, which a real ComfyUI serves with
 * `web.static('/templates', <package>/templates)` (server.py at a125cd84): `index.json` (the
 * categories the frontend's Templates dialog lists), a localized `index.fr.json`,
 * `fuse_options.json`, `index_logo.json` with one logo, and per template `<name>.json` and its
 * `<name>-1.webp` thumbnail (`-2.webp` too for a `thumbnailVariant`). Only served when the stand-in
 * is started with `templates: true` (system_stats then reports `installed_templates_version`).
 * `version` changes the package: a different description in `index.json` and one more template.
 */
import { emptyLatentWorkflow } from '../prompts.js';

/** 8×6 lossless WebP images (ffmpeg -f lavfi -i color=…), one colour per thumbnail. */
const WEBP = {
  red: '5249464620000000574542505650384c140000002f074001000710f58ffe070082f0bf6d22a2ff21',
  green: '5249464620000000574542505650384c140000002f074001000750c0ccfe070082f0bf6d22a2ff21',
  blue: '5249464620000000574542505650384c140000002f074001000710d1fffe070082f0bf6d22a2ff21',
} as const;
/** A 1×1 PNG logo. */
const PNG =
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c63304e9bf91f00043402325b2d0ae00000000049454e44ae426082';

export const STANDIN_TEMPLATES_VERSION = '0.1.95';

/** Every file of the library by its path under `/templates/`. */
export function standinTemplateLibrary(version = STANDIN_TEMPLATES_VERSION): Map<string, Buffer> {
  const newer = version !== STANDIN_TEMPLATES_VERSION;
  const image = [
    {
      name: 'default',
      title: 'Image Generation',
      mediaType: 'image',
      mediaSubtype: 'webp',
      description: newer
        ? 'Generate images from text prompts (updated).'
        : 'Generate images from text prompts.',
      tags: ['Text to Image', 'Image'],
      models: ['SD1.5'],
      logos: [{ provider: 'Comfy' }],
    },
    {
      name: 'image2image',
      title: 'Image to Image',
      mediaType: 'image',
      mediaSubtype: 'webp',
      description: 'Transform existing images using text prompts.',
      tags: ['Image to Image', 'Image'],
    },
    ...(newer
      ? [
          {
            name: 'inpaint_example',
            title: 'Inpaint',
            mediaType: 'image',
            mediaSubtype: 'webp',
            description: 'Edit parts of an image.',
            tags: ['Inpaint'],
          },
        ]
      : []),
  ];
  const video = [
    {
      name: 'ltxv_text_to_video',
      title: 'LTXV Text to Video',
      mediaType: 'image',
      mediaSubtype: 'webp',
      thumbnailVariant: 'hoverDissolve',
      description: 'Generate videos from text prompts.',
      tags: ['Text to Video', 'Video'],
    },
  ];
  const index = [
    {
      moduleName: 'default',
      type: 'image',
      isEssential: true,
      title: 'Getting Started',
      templates: [image[0]],
    },
    {
      moduleName: 'default',
      type: 'image',
      category: 'GENERATION TYPE',
      icon: 'icon-[lucide--image]',
      title: 'Image',
      templates: image,
    },
    {
      moduleName: 'default',
      type: 'video',
      category: 'GENERATION TYPE',
      icon: 'icon-[lucide--film]',
      title: 'Video',
      templates: video,
    },
  ];
  const fr = index.map((c) => ({
    ...c,
    title: c.title === 'Image' ? 'Image' : c.title === 'Video' ? 'Vidéo' : 'Premiers pas',
  }));
  const files = new Map<string, Buffer>();
  const json = (v: unknown) => Buffer.from(JSON.stringify(v, null, 2), 'utf8');
  files.set('index.json', json(index));
  files.set('index.fr.json', json(fr));
  files.set('fuse_options.json', json({ keys: [{ name: 'title', weight: 0.3 }], threshold: 0.33 }));
  files.set('index_logo.json', json({ Comfy: 'logo/comfy.png' }));
  files.set('logo/comfy.png', Buffer.from(PNG, 'hex'));
  const colours = [WEBP.red, WEBP.green, WEBP.blue];
  const all = [...image, ...video];
  all.forEach((t, i) => {
    files.set(`${t.name}.json`, Buffer.from(emptyLatentWorkflow({ width: 512 + 64 * i }), 'utf8'));
    files.set(`${t.name}-1.webp`, Buffer.from(colours[i % 3]!, 'hex'));
    if ('thumbnailVariant' in t) files.set(`${t.name}-2.webp`, Buffer.from(colours[(i + 1) % 3]!, 'hex'));
  });
  return files;
}
