import { pgArray } from './pg-array';

describe('pgArray', () => {
  it('writes NULLs, quoted and escaped strings, numbers, booleans and UTC dates', () => {
    const at = new Date(Date.UTC(2026, 11, 4, 19, 0, 0, 5));
    expect(pgArray(['a', null, 'NULL', '', 'x"y\\z', 6.5e-7, 12, true, false, at, undefined])).toBe(
      '{"a",NULL,"NULL","","x\\"y\\\\z",6.5e-7,12,t,f,"2026-12-04T19:00:00.005Z",NULL}',
    );
    expect(pgArray([])).toBe('{}');
  });
});
