import * as zlib from 'node:zlib';
import { contentCodings, decodeContent, decodedTap, usageEventTap } from './stream-taps';
import { openAiStyleUsage } from './usage';
import { asRecord } from './values';

const usageTap = () => usageEventTap((json) => openAiStyleUsage(asRecord(json).usage));

const stream = Buffer.from(
  [
    'data: {"choices":[{"delta":{"content":"日本語のテキスト 🎉"}}]}',
    '',
    'data: {"choices":[],"usage":{"prompt_tokens":41,"completion_tokens":7,"total_tokens":48}}',
    '',
    'data: [DONE]',
    '',
    '',
  ].join('\n'),
);

/** Pieces of 1..7 bytes, as a network might deliver a compressed stream. */
function pieces(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, size = 1; at < bytes.length; at += size, size = (size % 7) + 1) {
    out.push(bytes.subarray(at, at + size));
  }
  return out;
}

describe('decodedTap', () => {
  it.each([
    ['gzip', zlib.gzipSync(stream)],
    ['x-gzip', zlib.gzipSync(stream)],
    ['deflate', zlib.deflateSync(stream)],
    ['br', zlib.brotliCompressSync(stream)],
    ['gzip, br', zlib.brotliCompressSync(zlib.gzipSync(stream))],
  ])('lets the tap read a %s stream fed in small pieces', async (encoding, compressed) => {
    const sut = decodedTap(usageTap(), encoding);
    for (const piece of pieces(compressed)) sut.push(piece);
    await sut.end?.();

    expect(sut.result()).toMatchObject({ inputTokens: 41, outputTokens: 7, totalTokens: 48 });
  });

  it('returns the tap itself for identity or no encoding', () => {
    const tap = usageTap();

    expect(decodedTap(tap, undefined)).toBe(tap);
    expect(decodedTap(tap, 'identity')).toBe(tap);
  });

  it('reads nothing from an unknown coding or a corrupt body, and does not throw', async () => {
    const unknown = decodedTap(usageTap(), 'zstd');
    unknown.push(stream);
    await unknown.end?.();
    const corrupt = decodedTap(usageTap(), 'gzip');
    corrupt.push(Buffer.from('not gzip at all'));
    await corrupt.end?.();

    expect(unknown.result()).toBeUndefined();
    expect(corrupt.result()).toBeUndefined();
  });

  it('counts what arrived of a compressed stream cut off mid-way', async () => {
    const compressed = zlib.gzipSync(stream);
    const sut = decodedTap(usageTap(), 'gzip');
    // Everything but the gzip trailer (CRC and length): the client left before the end.
    sut.push(compressed.subarray(0, compressed.length - 8));
    await sut.end?.();

    expect(sut.result()).toMatchObject({ inputTokens: 41 });
  });
});

describe('decodeContent', () => {
  it('decodes whole bodies and lists codings in the order they were applied', () => {
    expect(decodeContent(zlib.gzipSync(stream), 'gzip')?.equals(stream)).toBe(true);
    expect(decodeContent(zlib.brotliCompressSync(zlib.deflateSync(stream)), 'deflate, br')?.equals(stream)).toBe(true);
    expect(decodeContent(Buffer.from('x'), 'gzip')).toBeUndefined();
    expect(contentCodings('identity')).toEqual([]);
    expect(contentCodings('compress')).toBeUndefined();
  });
});
