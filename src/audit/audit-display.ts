/**
 * "Chrome 131 on Linux", "curl 8.5.0", "Firefox 133 on Windows": enough to recognise a client at a
 * glance; the full string stays in the entry (and the cell's title).
 */
export function shortUserAgent(ua: string | null | undefined): string {
  if (!ua) return '';
  const os = /Windows/.test(ua)
    ? 'Windows'
    : /iPhone|iPad/.test(ua)
      ? 'iOS'
      : /Mac OS X/.test(ua)
        ? 'macOS'
        : /Android/.test(ua)
          ? 'Android'
          : /Linux/.test(ua)
            ? 'Linux'
            : '';
  const browsers: [RegExp, string][] = [
    [/Edg\/(\d+)/, 'Edge'],
    [/Firefox\/(\d+)/, 'Firefox'],
    [/(?:Chrome|Chromium)\/(\d+)/, 'Chrome'],
    [/Version\/(\d+)[^ ]* (?:Mobile\/\S+ )?Safari\//, 'Safari'],
  ];
  for (const [pattern, name] of browsers) {
    const match = pattern.exec(ua);
    if (match) return `${name} ${match[1]}${os ? ` on ${os}` : ''}`;
  }
  const first = /^([A-Za-z][\w.-]*)(?:\/([\w.-]+))?/.exec(ua);
  const label = first ? `${first[1]}${first[2] ? ` ${first[2]}` : ''}` : ua;
  return label.length > 40 ? `${label.slice(0, 39)}…` : label;
}

/** Details as indented JSON for a collapsed <details> block; '' when there are none. */
export function detailsText(details: Record<string, unknown>): string {
  return Object.keys(details).length > 0 ? JSON.stringify(details, null, 2) : '';
}

/** A one-line summary of the details: their field names. */
export function detailsSummary(details: Record<string, unknown>): string {
  const fields = Object.keys(details);
  if (fields.length === 0) return '';
  return fields.length <= 4 ? fields.join(', ') : `${fields.slice(0, 4).join(', ')} +${fields.length - 4}`;
}
