import type { KeywardConfig } from '../config/config';
import { CliError, cliKeyring, openDatabase, openVault, type Output } from './context';

/** `audit verify`: walks the whole hash chain; exit 1 at the first broken link. */
export async function verifyAudit(config: KeywardConfig, out: Output): Promise<void> {
  const keys = await cliKeyring(config);
  const db = await openDatabase(config, out);
  try {
    const { audit } = await openVault(keys, db);
    const report = await audit.verifyChain();
    if (!report.ok) {
      throw new CliError(
        `audit chain broken at entry ${report.firstBreak!.seq}: ${report.firstBreak!.reason} (${report.checked} entries before it verify)`,
      );
    }
    out.line(
      `Audit chain intact: ${report.checked} entries` +
        (report.head ? `, head ${report.head.seq} ${report.head.hash} (record it elsewhere to detect truncation)` : ''),
    );
  } finally {
    await db.close();
  }
}
