import { SseDecoder, type SseEvent } from './sse';

interface Decoded {
  events: SseEvent[];
  raws: Buffer[];
  oversized: Buffer[];
  sut: SseDecoder;
}

function decode(chunks: Array<string | Buffer>, options: { end?: boolean; maxEventBytes?: number } = {}): Decoded {
  const events: SseEvent[] = [];
  const raws: Buffer[] = [];
  const oversized: Buffer[] = [];
  const sut = new SseDecoder(
    (event, raw) => {
      events.push(event);
      raws.push(Buffer.from(raw));
    },
    { maxEventBytes: options.maxEventBytes, onOversized: (bytes) => oversized.push(Buffer.from(bytes)) },
  );
  for (const chunk of chunks) sut.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  if (options.end) sut.end();
  return { events, raws, oversized, sut };
}

/** Events that carry data, the ones a usage counter looks at. */
const withData = (events: SseEvent[]) => events.filter((e) => e.data !== '');

/** Every way of cutting `bytes` into two pieces, and into one piece per byte. */
function splits(bytes: Buffer): Buffer[][] {
  const result: Buffer[][] = [[bytes], [...bytes].map((b) => Buffer.from([b]))];
  for (let at = 1; at < bytes.length; at++) result.push([bytes.subarray(0, at), bytes.subarray(at)]);
  return result;
}

describe('SseDecoder', () => {
  const text = '日本語のテキスト 🎉';

  it('reads named and unnamed events, ids and retry, and hands out comment blocks with empty data', () => {
    const { events } = decode([
      ': OPENROUTER PROCESSING\n\nevent: ping\nid: 7\nretry: 1500\ndata: {"a":1}\n\ndata: [DONE]\n\n',
    ]);

    expect(events).toEqual([
      { data: '' },
      { event: 'ping', id: '7', retry: 1500, data: '{"a":1}' },
      { data: '[DONE]' },
    ]);
  });

  it('keeps "日本語のテキスト 🎉" whole for every two-piece split and for one chunk per byte', () => {
    const stream = Buffer.from(`data: {"t":"${text}"}\n\ndata: ${text}\ndata: ${text}\n\n`);
    for (const chunks of splits(stream)) {
      const { events, raws } = decode(chunks);

      expect(events).toEqual([{ data: `{"t":"${text}"}` }, { data: `${text}\n${text}` }]);
      expect(Buffer.concat(raws).equals(stream)).toBe(true);
    }
  });

  it.each([
    ['LF', '\n'],
    ['CR', '\r'],
    ['CRLF', '\r\n'],
  ])('splits lines on %s, at every split position, and raw holds the exact bytes', (_name, eol) => {
    const stream = Buffer.from(`event: a${eol}data: ${text}${eol}${eol}data: two${eol}data: lines${eol}${eol}`);
    for (const chunks of splits(stream)) {
      const { events, raws } = decode(chunks);

      expect(withData(events)).toEqual([{ event: 'a', data: text }, { data: 'two\nlines' }]);
      expect(Buffer.concat(raws).equals(stream)).toBe(true);
    }
  });

  it('takes a CR at the end of one chunk and a LF at the start of the next as one line ending', () => {
    const { events, raws } = decode(['data: a\r', '\ndata: b\r\n\r', '\n']);

    expect(withData(events)).toEqual([{ data: 'a\nb' }]);
    // The event went out at its CR; the LF completing that CRLF comes as a block of its own.
    expect(raws.map(String)).toEqual(['data: a\r\ndata: b\r\n\r', '\n']);
  });

  it('hands out an event as soon as its blank line arrives, without waiting for more bytes', () => {
    const events: SseEvent[] = [];
    const sut = new SseDecoder((event) => events.push(event));

    sut.push(Buffer.from('data: first\n'));
    expect(events).toEqual([]);
    sut.push(Buffer.from('\ndata: sec'));
    expect(events).toEqual([{ data: 'first' }]);
  });

  it('accepts mixed line endings in one stream', () => {
    const { events } = decode(['data: 1\r\n\rdata: 2\n\r\ndata: 3\r\r']);

    expect(withData(events)).toEqual([{ data: '1' }, { data: '2' }, { data: '3' }]);
  });

  it('parses fields as the standard says: no space, no colon, a second space kept, unknown fields ignored', () => {
    const { events } = decode(['data:x\ndata\ndata:  y\nfoo: bar\nevent:e\n\n']);

    expect(events).toEqual([{ event: 'e', data: 'x\n\n y' }]);
  });

  it('ignores an id with NUL and a non-numeric retry, and strips a leading byte-order mark', () => {
    const { events } = decode([Buffer.from([0xef, 0xbb]), Buffer.from([0xbf]), 'data: a\nid: x\0y\nretry: 1s\n\n']);

    expect(events).toEqual([{ data: 'a' }]);
  });

  it('flushes a final event without a trailing blank line on end(), and only then', () => {
    expect(decode(['data: one\ndata: two']).events).toEqual([]);
    const { events, raws } = decode(['data: one\ndata: t', 'wo'], { end: true });

    expect(events).toEqual([{ data: 'one\ntwo' }]);
    expect(raws.map(String)).toEqual(['data: one\ndata: two']);
  });

  it('hands out every byte exactly once, blank lines between events included', () => {
    const stream = Buffer.from('\n\ndata: a\n\n\n: keep-alive\n\ndata: b\n\n');
    const { events, raws } = decode([stream]);

    expect(withData(events)).toEqual([{ data: 'a' }, { data: 'b' }]);
    expect(Buffer.concat(raws).equals(stream)).toBe(true);
  });

  it('does not assemble an event over maxEventBytes: its bytes go to onOversized, memory stays bounded', () => {
    const big = `data: ${'x'.repeat(100)}\n\n`;
    const stream = `data: small\n\n${big}data: after\n\n`;
    for (const chunks of [[stream], [...Buffer.from(stream)].map((b) => Buffer.from([b]))]) {
      const { events, raws, oversized, sut } = decode(chunks, { maxEventBytes: 40 });

      expect(withData(events)).toEqual([{ data: 'small' }, { data: 'after' }]);
      expect(Buffer.concat(oversized).toString()).toBe(big);
      expect(Buffer.concat([raws[0], ...oversized, raws[1]]).toString()).toBe(stream);
      expect(sut.oversizedEvents).toBe(1);
    }
  });

  it('skips an over-long line that never ends without holding it', () => {
    const oversized: number[] = [];
    const sut = new SseDecoder(() => undefined, { maxEventBytes: 64, onOversized: (b) => oversized.push(b.length) });
    for (let i = 0; i < 1000; i++) sut.push(Buffer.alloc(1024, 0x78));

    expect(oversized.reduce((a, b) => a + b, 0)).toBe(1024 * 1000);
    expect(sut.oversizedEvents).toBe(1);
  });
});
