import { recordId } from './record-id';

describe('recordId', () => {
  it('is a version 7, RFC 9562 variant UUID carrying the time in milliseconds', () => {
    const at = Date.UTC(2026, 11, 4, 19, 30, 0, 123);
    const id = recordId(at);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseInt(id.slice(0, 8) + id.slice(9, 13), 16)).toBe(at);
  });

  it('sorts by time, so later records go to the end of the index', () => {
    const ids = [0, 1, 255, 256, 65_536, 2 ** 32, 2 ** 40 + 7].map((dt) => recordId(1_700_000_000_000 + dt));
    expect([...ids].sort()).toEqual(ids);
  });

  it('does not repeat, also across refills of its random pool', () => {
    const at = Date.now();
    const ids = new Set(Array.from({ length: 5_000 }, () => recordId(at)));
    expect(ids.size).toBe(5_000);
  });
});
