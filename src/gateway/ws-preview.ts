/**
 * A ComfyUI preview frame in the shape each browser takes: type 4 (with metadata) for clients
 * that announced `supports_preview_metadata`, type 1 otherwise; each shape made at most once.
 * Frames that are not image previews go out unchanged.
 */
import {
  BinaryEventType,
  PreviewImageFormat,
  decodeBinaryFrame,
  encodeBinaryFrame,
} from '../comfy/protocol.js';

export class PreviewFrames {
  private readonly decoded: ReturnType<typeof decodeBinaryFrame> | null;
  private type1: Buffer | null = null;
  private type4: Buffer | null = null;

  /** `executing`: the job's last `executing` data (names the node a type-1 preview belongs to). */
  constructor(
    private readonly frame: Buffer,
    private readonly jobId: string,
    private readonly executing: Record<string, unknown> | null,
  ) {
    let decoded: ReturnType<typeof decodeBinaryFrame> | null;
    try {
      decoded = decodeBinaryFrame(frame);
    } catch {
      decoded = null;
    }
    this.decoded = decoded;
  }

  for(withMetadata: boolean): Buffer {
    const d = this.decoded;
    if (d?.name !== 'PREVIEW_IMAGE' && d?.name !== 'PREVIEW_IMAGE_WITH_METADATA') return this.frame;
    if (withMetadata) {
      const node = typeof this.executing?.node === 'string' ? this.executing.node : null;
      const displayNode =
        typeof this.executing?.display_node === 'string' ? this.executing.display_node : node;
      this.type4 ??= encodeBinaryFrame({
        event: BinaryEventType.PREVIEW_IMAGE_WITH_METADATA,
        name: 'PREVIEW_IMAGE_WITH_METADATA',
        metadata:
          d.name === 'PREVIEW_IMAGE_WITH_METADATA'
            ? { ...d.metadata, prompt_id: this.jobId }
            : {
                node_id: node ?? undefined,
                display_node_id: displayNode,
                parent_node_id: null,
                real_node_id: node,
                prompt_id: this.jobId,
              },
        mime: d.mime,
        image: d.image,
      });
      return this.type4;
    }
    this.type1 ??=
      d.name === 'PREVIEW_IMAGE'
        ? this.frame
        : encodeBinaryFrame({
            event: BinaryEventType.PREVIEW_IMAGE,
            name: 'PREVIEW_IMAGE',
            format: d.mime === 'image/png' ? PreviewImageFormat.PNG : PreviewImageFormat.JPEG,
            mime: d.mime,
            image: d.image,
          });
    return this.type1;
  }
}
