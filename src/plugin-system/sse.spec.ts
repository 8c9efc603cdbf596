import { SseReader, type SseEvent } from './sse';

function read(chunks: Array<string | Buffer>, end = false): SseEvent[] {
  const events: SseEvent[] = [];
  const sut = new SseReader((event) => events.push(event));
  for (const chunk of chunks) {
    sut.push(chunk);
  }
  if (end) {
    sut.end();
  }
  return events;
}

describe('SseReader', () => {
  it('reads named and unnamed events and skips comments', () => {
    const events = read([': OPENROUTER PROCESSING\n\nevent: ping\ndata: {"a":1}\n\ndata: [DONE]\n\n']);

    expect(events).toEqual([{ event: 'ping', data: '{"a":1}' }, { data: '[DONE]' }]);
  });

  it('puts back together an event and a UTF-8 character split across chunks', () => {
    const bytes = Buffer.from('data: {"text":"ünï"}\n\n');
    const chunks = [...bytes].map((byte) => Buffer.from([byte]));

    expect(read(chunks)).toEqual([{ data: '{"text":"ünï"}' }]);
  });

  it('accepts CRLF line ends, also when split between \\r and \\n', () => {
    expect(read(['data: a\r', '\n\r\ndata: b\r\n', '\r\n'])).toEqual([{ data: 'a' }, { data: 'b' }]);
  });

  it('joins multi-line data and dispatches an unterminated event at the end', () => {
    expect(read(['data: one\ndata: two'], false)).toEqual([]);
    expect(read(['data: one\ndata: two'], true)).toEqual([{ data: 'one\ntwo' }]);
  });

  it('drops a line longer than the limit instead of buffering it', () => {
    const events: SseEvent[] = [];
    const sut = new SseReader((event) => events.push(event), { maxLineLength: 16 });

    sut.push(`data: ${'x'.repeat(10)}`);
    sut.push(`${'x'.repeat(10)}\n\ndata: short\n\n`);

    expect(events).toEqual([{ data: 'short' }]);
  });
});
