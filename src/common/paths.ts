import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/**
 * The folder holding package.json, views/ and public/ — reached from `src` (tests) and from
 * `dist/src` (production) alike, so nothing depends on where the compiler put this file.
 */
export function projectRoot(): string {
  let dir = __dirname;
  while (!existsSync(path.join(dir, 'views')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
