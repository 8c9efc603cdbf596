import { pgArray } from '../../src/database/pg-array';
import { TEST_ENV, withAdminClient } from '../support/test-database';

// What PostgreSQL reads back from pgArray's text is what was meant, for every column type the
// usage writer sends that way.
describe('pgArray against PostgreSQL', () => {
  it('is read back as the values it was made of', async () => {
    const texts = ['plain', 'NULL', '', 'quote " and \\ backslash', 'comma, {brace}', '日本語 🎉', null];
    const at = new Date(Date.UTC(2026, 0, 31, 23, 59, 59, 999));
    const rows = await withAdminClient(
      process.env[TEST_ENV.serverUrl]!,
      async (client) =>
        (
          await client.query<{
            t: (string | null)[];
            n: string[];
            big: string[];
            b: boolean[];
            d: Date[];
            u: string[];
          }>(
            `SELECT $1::text[] AS t, $2::numeric(18, 8)[]::text[] AS n, $3::numeric[]::text[] AS big, $4::bool[] AS b,
                  $5::timestamptz[] AS d, $6::uuid[]::text[] AS u`,
            [
              pgArray(texts),
              pgArray([6.5e-7, 0.000000125, 12]),
              pgArray([1e21]),
              pgArray([true, false]),
              pgArray([at]),
              pgArray(['0190f3a8-7b2c-7def-8abc-0123456789ab', null]),
            ],
          )
        ).rows,
    );
    expect(rows[0].t).toEqual(texts);
    // numeric rounds the decimal text half away from zero: 1.25e-7 is 13 units of 1e-8.
    expect(rows[0].n).toEqual(['0.00000065', '0.00000013', '12.00000000']);
    expect(rows[0].big).toEqual(['1000000000000000000000']);
    expect(rows[0].b).toEqual([true, false]);
    expect(rows[0].d.map((d) => d.getTime())).toEqual([at.getTime()]);
    expect(rows[0].u).toEqual(['0190f3a8-7b2c-7def-8abc-0123456789ab', null]);
  });
});
