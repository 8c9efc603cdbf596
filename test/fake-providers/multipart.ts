/** A small `multipart/form-data` reader for the fakes: fields as text, files as bytes. */

export interface MultipartFile {
  field: string;
  filename: string;
  contentType: string;
  bytes: Buffer;
}

export interface MultipartForm {
  fields: Record<string, string>;
  files: MultipartFile[];
  /** `{ file: { filename, contentType, bytes } }` for the request record (sizes, not contents). */
  describeFiles(): Record<string, { filename: string; contentType: string; bytes: number }>;
}

/** Undefined when the body is not a well-formed form for the boundary in `contentType`. */
export function parseMultipart(body: Buffer, contentType: string): MultipartForm | undefined {
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  if (!boundary) return undefined;
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const fields: Record<string, string> = {};
  const files: MultipartFile[] = [];
  let at = body.indexOf(delimiter);
  if (at === -1) return undefined;
  for (;;) {
    at += delimiter.length;
    if (body.subarray(at, at + 2).toString() === '--') break;
    const headerEnd = body.indexOf('\r\n\r\n', at);
    const next = body.indexOf(delimiter, at);
    if (headerEnd === -1 || next === -1 || headerEnd > next) return undefined;
    const headers = body.subarray(at, headerEnd).toString('utf8');
    // The part's content ends with the CRLF that precedes the next delimiter.
    const content = body.subarray(headerEnd + 4, next - 2);
    const name = /name="([^"]*)"/i.exec(headers)?.[1];
    const filename = /filename="([^"]*)"/i.exec(headers)?.[1];
    const type = /content-type:\s*([^\r\n]+)/i.exec(headers)?.[1] ?? 'application/octet-stream';
    if (name === undefined) return undefined;
    if (filename !== undefined) {
      files.push({ field: name, filename, contentType: type.trim(), bytes: Buffer.from(content) });
    } else {
      fields[name] = content.toString('utf8');
    }
    at = next;
  }
  return {
    fields,
    files,
    describeFiles: () =>
      Object.fromEntries(
        files.map((file) => [
          file.field,
          { filename: file.filename, contentType: file.contentType, bytes: file.bytes.length },
        ]),
      ),
  };
}
