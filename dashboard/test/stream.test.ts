import { describe, expect, it } from 'vitest';
import { SseParser } from '../src/api/stream';

describe('SseParser', () => {
  it('reads events split across chunks, with ids, types and multi-line data', () => {
    const p = new SseParser();
    expect(p.feed('id: 5\nevent: sam')).toEqual([]);
    expect(p.feed('ple\ndata: {"a":\ndata: 1}\n')).toEqual([]);
    expect(p.feed('\n')).toEqual([{ id: '5', event: 'sample', data: '{"a":\n1}' }]);
  });

  it('skips heartbeat comments and handles CRLF line ends', () => {
    const p = new SseParser();
    const out = p.feed(': heartbeat\r\n\r\nid: 9\r\nevent: decision\r\ndata: x\r\n\r\n');
    expect(out).toEqual([{ id: '9', event: 'decision', data: 'x' }]);
  });

  it('keeps the last id for later events and waits for a split CRLF', () => {
    const p = new SseParser();
    expect(p.feed('id: 3\ndata: a\r')).toEqual([]);
    expect(p.feed('\n\r\ndata: b\n\n')).toEqual([
      { id: '3', event: 'message', data: 'a' },
      { id: '3', event: 'message', data: 'b' },
    ]);
  });
});
