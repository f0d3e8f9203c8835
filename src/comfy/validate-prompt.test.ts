import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ObjectInfoSchema, PromptErrorBodySchema, type ObjectInfo } from './protocol.js';
import { typesMatch, validatePrompt } from './validate-prompt.js';
import { FIXTURES_ROOT } from '../../test/support/fixtures.js';

const FIXTURES = FIXTURES_ROOT;
const readJson = (...p: string[]): unknown => JSON.parse(readFileSync(join(FIXTURES, ...p), 'utf8'));

const objectInfo = ObjectInfoSchema.parse(readJson('comfyui-v0.3.64', 'object_info.json'));

interface ErrorCase {
  case: string;
  description: string;
  request: { body: { prompt?: unknown } | null };
  response: { status: number; body: unknown };
}
const recorded = readJson('comfyui-v0.3.64', 'prompt_errors.json') as {
  cases: ErrorCase[];
  valid_prompt_after_errors: { request: { body: { prompt: unknown } } };
};

/** Files in the recording server's input folder when the error cases ran. */
const inputFiles = new Set(['example.png']);
const inputFileExists = (name: string) => inputFiles.has(name);

/** Python tracebacks quote the server's own source; we only check their shape. */
function withoutTracebacks(body: unknown): unknown {
  return JSON.parse(JSON.stringify(body), (key, value: unknown) =>
    key === 'traceback' ? '<traceback>' : value,
  );
}

const base = () => ({
  '1': { class_type: 'EmptyImage', inputs: { width: 64, height: 48, batch_size: 1, color: 0 } },
  '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
  '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'x' } },
});

function rejected(prompt: unknown, info: ObjectInfo = objectInfo, opts = {}) {
  const r = validatePrompt(prompt, info, opts);
  if (r.ok) throw new Error(`expected a rejection, got ${JSON.stringify(r)}`);
  expect(r.status).toBe(400);
  PromptErrorBodySchema.parse(r.body);
  return r.body;
}

describe('validatePrompt against the recorded ComfyUI v0.3.64 answers', () => {
  const cases = recorded.cases.filter((c) => c.response.status === 400);
  it("covers every recorded 400 case (the malformed-JSON 500 is the HTTP layer's)", () => {
    expect(recorded.cases.filter((c) => c.response.status !== 400).map((c) => c.case)).toEqual([
      'f_malformed_json',
    ]);
    expect(cases.map((c) => c.case)).toEqual([
      'a_unknown_node_class',
      'b_required_input_missing',
      'c1_value_below_min',
      'c2_value_above_max',
      'd_combo_value_not_in_list',
      'e_no_output_node',
      'g_missing_link_source',
      'h_no_prompt_key',
      'i_link_type_mismatch',
      'j_missing_class_type',
      'k_invalid_input_type',
      'l_loadimage_missing_file',
      'm_two_bad_nodes',
    ]);
  });

  it.each(cases.map((c) => [c.case, c] as const))('%s', (_name, c) => {
    expect(c.response.status).toBe(400);
    const result = validatePrompt(c.request.body?.prompt, objectInfo, { inputFileExists });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.status).toBe(400);
    expect(withoutTracebacks(result.body)).toEqual(withoutTracebacks(c.response.body));
    // Every traceback is a list of Python-style frame lines.
    JSON.stringify(result.body, (key, value: unknown) => {
      if (key === 'traceback') {
        expect(Array.isArray(value) && value.length > 0).toBe(true);
        for (const line of value as string[]) expect(line).toMatch(/^ {2}File ".+", line \d+, in \w+\n/);
      }
      return value;
    });
  });

  it('accepts the valid prompt recorded after the errors', () => {
    const r = validatePrompt(recorded.valid_prompt_after_errors.request.body.prompt, objectInfo);
    expect(r).toMatchObject({ ok: true, outputs: ['3'], nodeErrors: {} });
  });

  it('accepts every prompt the recording server ran', () => {
    for (const file of ['ws_transcript_modelfree.json', 'ws_transcript_binary_text_and_feature_flags.json']) {
      const t = readJson('comfyui-v0.3.64', file) as { request: { body: { prompt: unknown } } };
      expect(validatePrompt(t.request.body.prompt, objectInfo).ok).toBe(true);
    }
    const up = readJson('comfyui-v0.3.64', 'upload_image.json') as {
      loadimage_subfolder_run: { request: { body: { prompt: unknown } } };
    };
    // LoadImage's own validation replaces the combo check, so subfolder files pass.
    const exists = (n: string) => n === 'fixtures/fixture_upload.png';
    expect(
      validatePrompt(up.loadimage_subfolder_run.request.body.prompt, objectInfo, { inputFileExists: exists })
        .ok,
    ).toBe(true);
  });

  it('without an inputFileExists hook accepts any LoadImage file name', () => {
    const l = recorded.cases.find((c) => c.case === 'l_loadimage_missing_file');
    expect(validatePrompt(l?.request.body?.prompt, objectInfo).ok).toBe(true);
  });
});

describe('validatePrompt beyond the recordings', () => {
  it('returns the outputs in prompt order and ComfyUI-converted values', () => {
    const p = {
      '4': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
      ...base(),
    };
    p['1'].inputs.width = '64' as unknown as number;
    p['1'].inputs.height = 47.9 as number;
    const r = validatePrompt(p, objectInfo);
    if (!r.ok) throw new Error(JSON.stringify(r.body));
    expect(r.outputs.sort()).toEqual(['3', '4']);
    expect(r.prompt['1']?.inputs).toMatchObject({ width: 64, height: 47 });
    // The caller's prompt is not touched.
    expect(p['1'].inputs.width).toBe('64');
  });

  it('honours partial_execution_targets', () => {
    const p = { ...base(), '4': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } } };
    expect(validatePrompt(p, objectInfo, { partialExecutionTargets: ['4'] })).toMatchObject({
      outputs: ['4'],
    });
    expect(rejected(p, objectInfo, { partialExecutionTargets: ['2'] }).error.type).toBe('prompt_no_outputs');
  });

  it('answers 200 with node_errors when only some outputs fail', () => {
    const p = { ...base(), '4': { class_type: 'PreviewImage', inputs: { images: ['1', 7] } } };
    const r = validatePrompt(p, objectInfo);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.outputs).toEqual(['3']);
    expect(r.nodeErrors['4']?.errors[0]).toMatchObject({
      type: 'exception_during_validation',
      details: 'tuple index out of range',
      extra_info: { exception_type: 'IndexError' },
    });
  });

  it('reports an exception inside an upstream node as exception_during_inner_validation', () => {
    const p = base();
    p['2'].inputs.image = ['99', 0];
    const body = rejected(p);
    expect(body.error.details).toBe('');
    expect(body.node_errors['2']).toMatchObject({
      class_type: 'ImageInvert',
      dependent_outputs: ['3'],
      errors: [
        {
          type: 'exception_during_inner_validation',
          message: 'Exception when validating inner node',
          details: "'99'",
          extra_info: {
            input_name: 'images',
            input_config: ['IMAGE', { tooltip: 'The images to save.' }],
            exception_message: "'99'",
            exception_type: 'KeyError',
            linked_node: ['2', 0],
          },
        },
      ],
    });
  });

  it('emulates Python exceptions for odd links', () => {
    const at = (v: unknown) => {
      const p = base() as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
      (p['3'] as { inputs: Record<string, unknown> }).inputs.images = v;
      return rejected(p).node_errors['3']?.errors[0];
    };
    expect(at([1, 0])).toMatchObject({ details: '1', extra_info: { exception_type: 'KeyError' } });
    expect(at([['1'], 0])).toMatchObject({
      details: "unhashable type: 'list'",
      extra_info: { exception_type: 'TypeError' },
    });
    expect(at(['2', 'x'])).toMatchObject({ details: 'tuple indices must be integers or slices, not str' });
    expect(at(['2', 0.5])).toMatchObject({ details: 'tuple indices must be integers or slices, not float' });
    expect(
      validatePrompt(
        { ...base(), '3': { class_type: 'SaveImage', inputs: { images: ['2', -1], filename_prefix: 'x' } } },
        objectInfo,
      ).ok,
    ).toBe(true);
    expect(at(['2', 0, 1])).toEqual({
      type: 'bad_linked_input',
      message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
      details: 'images',
      extra_info: {
        input_name: 'images',
        input_config: ['IMAGE', { tooltip: 'The images to save.' }],
        received_value: ['2', 0, 1],
      },
    });
  });

  it('reports a node without inputs as a KeyError', () => {
    const p = { ...base(), '2': { class_type: 'ImageInvert' } };
    const body = rejected(p);
    expect(body.node_errors['2']?.errors[0]).toMatchObject({
      type: 'exception_during_inner_validation',
      details: "'inputs'",
    });
  });

  it('settles a cycle like ComfyUI: the outputs fail without node errors', () => {
    const p = {
      '1': { class_type: 'ImageInvert', inputs: { image: ['2', 0] } },
      '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
      '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'x' } },
    };
    const body = rejected(p);
    expect(body.error).toMatchObject({ type: 'prompt_outputs_failed_validation', details: '' });
    expect(body.node_errors).toEqual({});
  });

  it('lists every failing output that ran into an upstream error', () => {
    const p = base();
    p['1'].inputs.width = 0;
    const body = rejected({ ...p, '4': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } } });
    expect(body.node_errors['1']?.dependent_outputs).toEqual(['3', '4']);
    expect(Object.keys(body.node_errors)).toEqual(['1']);
  });

  it('formats conversions and limits like Python', () => {
    const ks = (inputs: Record<string, unknown>) =>
      rejected({
        '1': {
          class_type: 'KSampler',
          inputs: {
            model: ['9', 0],
            positive: ['5', 0],
            negative: ['5', 0],
            latent_image: ['8', 0],
            seed: 1,
            steps: 20,
            cfg: 8,
            sampler_name: 'euler',
            scheduler: 'normal',
            denoise: 1,
            ...inputs,
          },
        },
        '5': { class_type: 'CLIPTextEncode', inputs: { text: 'a cat', clip: ['9', 1] } },
        '8': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
        '9': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'm.safetensors' } },
        '7': { class_type: 'SaveLatent', inputs: { samples: ['1', 0], filename_prefix: 'x' } },
      }).node_errors;
    const errs = ks({ cfg: 101, denoise: -0.5, steps: '2.5', sampler_name: 'nope' });
    expect(errs['1']?.errors.map((e) => [e.type, e.message, e.details])).toEqual([
      [
        'invalid_input_type',
        'Failed to convert an input value to a INT value',
        "steps, 2.5, invalid literal for int() with base 10: '2.5'",
      ],
      ['value_bigger_than_max', 'Value 101.0 bigger than max of 100.0', 'cfg'],
      ['value_not_in_list', 'Value not in list', "sampler_name: 'nope' not in (list of length 42)"],
      ['value_smaller_than_min', 'Value -0.5 smaller than min of 0.0', 'denoise'],
    ]);
    expect(errs['1']?.errors[2]?.extra_info.input_config).toBeNull();
    // Model combos are empty on the recording server: ComfyUI's answer for a missing model.
    expect(errs['9']?.errors[0]).toMatchObject({
      type: 'value_not_in_list',
      details: "ckpt_name: 'm.safetensors' not in []",
    });
    const types = ks({ seed: null, cfg: 'abc', denoise: { __value__: '0.25' } })['1']?.errors.map(
      (e) => e.details,
    );
    expect(types).toEqual([
      "seed, None, int() argument must be a string, a bytes-like object or a real number, not 'NoneType'",
      "cfg, abc, could not convert string to float: 'abc'",
    ]);
  });

  it('handles new-style COMBO inputs, * inputs and comma type unions', () => {
    const p = {
      '1': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
      '2': {
        class_type: 'SaveVideo',
        inputs: { video: ['3', 0], filename_prefix: 'v', format: 'mkv', codec: 'auto' },
      },
      '3': { class_type: 'CreateVideo', inputs: { images: ['1', 0], fps: 24 } },
      '4': { class_type: 'PreviewAny', inputs: { source: ['1', 0] } },
    };
    const { '4': preview, ...videoOnly } = p;
    const body = rejected(videoOnly);
    expect(preview.class_type).toBe('PreviewAny');
    expect(body.node_errors['2']?.errors).toEqual([
      {
        type: 'value_not_in_list',
        message: 'Value not in list',
        details: "format: 'mkv' not in ['auto', 'mp4']",
        extra_info: {
          input_name: 'format',
          input_config: [
            'COMBO',
            {
              tooltip: 'The format to save the video as.',
              default: 'auto',
              multiselect: false,
              options: ['auto', 'mp4'],
            },
          ],
          received_value: 'mkv',
        },
      },
    ]);
    // PreviewAny's `*` input took the IMAGE; only the SaveVideo output failed, so 200 + node_errors.
    expect(validatePrompt(p, objectInfo)).toMatchObject({ ok: true, outputs: ['4'] });
    expect(validatePrompt(p, objectInfo, { checkComboOptions: false })).toMatchObject({
      ok: true,
      outputs: ['2', '4'],
    });
    expect(typesMatch('INT', 'FLOAT,INT')).toBe(true);
    expect(typesMatch('STRING', 'FLOAT,INT')).toBe(false);
    expect(typesMatch(['a', 'b'], 'COMBO')).toBe(true);
    expect(typesMatch(['a', 'b'], ['a', 'b'])).toBe(true);
    expect(typesMatch('IMAGE', ['a'])).toBe(false);
  });

  it('runs the file check of the core loaders and its Python failure modes', () => {
    const p = (image: unknown) => ({
      '1': { class_type: 'LoadImageMask', inputs: { image, channel: 'alpha' } },
      '2': { class_type: 'MaskToImage', inputs: { mask: ['1', 0] } },
      '3': { class_type: 'SaveImage', inputs: { images: ['2', 0], filename_prefix: 'x' } },
    });
    const seen: string[] = [];
    const exists = (n: string, ref: { nodeId: string }) => (
      seen.push(`${ref.nodeId}:${n}`),
      n.endsWith(' [output]')
    );
    expect(validatePrompt(p('a.png [output]'), objectInfo, { inputFileExists: exists }).ok).toBe(true);
    expect(rejected(p('b.png'), objectInfo, { inputFileExists: exists }).node_errors['1']?.errors).toEqual([
      {
        type: 'custom_validation_failed',
        message: 'Custom validation failed for node',
        details: 'image - Invalid image file: b.png',
        extra_info: { input_name: 'image' },
      },
    ]);
    expect(seen).toEqual(['1:a.png [output]', '1:b.png']);
    expect(rejected(p(5)).node_errors['1']?.errors[0]).toMatchObject({
      type: 'exception_during_inner_validation',
      details: "'int' object has no attribute 'endswith'",
      extra_info: { exception_type: 'AttributeError' },
    });
    const missing = p('x');
    delete (missing['1'].inputs as { image?: unknown }).image;
    expect(rejected(missing).node_errors['1']?.errors[0]).toMatchObject({
      details: "LoadImageMask.VALIDATE_INPUTS() missing 1 required positional argument: 'image'",
      extra_info: { exception_type: 'TypeError' },
    });
  });

  it('answers malformed prompts', () => {
    expect(rejected([]).error.type).toBe('prompt_no_outputs');
    expect(rejected('').error.type).toBe('prompt_no_outputs');
    expect(rejected(42).error.type).toBe('invalid_prompt');
    expect(rejected({ '1': 'x' }).error.message).toBe(
      'Cannot execute because a node is missing the class_type property.',
    );
    expect(rejected({ '1': { class_type: 7, inputs: {} } }).error.message).toBe(
      'Cannot execute because node 7 does not exist.',
    );
    expect(rejected({ '1': { class_type: 'SaveImage', inputs: null } }).error.details).toBe(
      "Exception when validating node: argument of type 'NoneType' is not iterable",
    );
  });

  it('compares min with Python semantics', () => {
    const info: ObjectInfo = structuredClone(objectInfo);
    const save = info.SaveImage;
    if (!save?.input.required) throw new Error('SaveImage missing');
    save.input.required.filename_prefix = ['STRING', { default: 'ComfyUI', min: 3 }];
    const body = rejected(base(), info);
    expect(body.node_errors['3']?.errors[0]).toMatchObject({
      type: 'exception_during_validation',
      details: "'<' not supported between instances of 'str' and 'int'",
    });
  });
});
