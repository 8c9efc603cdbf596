import { type ArgumentMetadata, ValidationError, ValidationPipe } from '@nestjs/common';
import { plainToInstance } from 'class-transformer';
import { validate } from 'class-validator';
import { FieldError, ValidationProblem } from './problem';

/** Flattens class-validator's tree into `a.b[0].c` field paths. */
export function toFieldErrors(errors: ValidationError[], parent = ''): FieldError[] {
  const out: FieldError[] = [];
  for (const error of errors) {
    const field = parent
      ? /^\d+$/.test(error.property)
        ? `${parent}[${error.property}]`
        : `${parent}.${error.property}`
      : error.property;
    const messages = Object.values(error.constraints ?? {});
    if (messages.length > 0) out.push({ field, messages });
    if (error.children?.length) out.push(...toFieldErrors(error.children, field));
  }
  return out;
}

/**
 * Query fields sent empty mean "not set". Every filter form (audit, users, keys, tokens, usage)
 * submits all its fields, the empty ones too, with or without JavaScript; this is the one place
 * that reads them so, before any query DTO sees them.
 */
export function withoutEmptyFields(query: unknown): unknown {
  if (!query || typeof query !== 'object' || Array.isArray(query)) return query;
  const kept: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(query as Record<string, unknown>)) {
    if (typeof value === 'string' && value.trim() === '') continue;
    if (Array.isArray(value)) {
      const values = value.filter((v) => !(typeof v === 'string' && v.trim() === ''));
      if (values.length > 0) kept[field] = values.length === 1 ? values[0] : values;
      continue;
    }
    kept[field] = value;
  }
  return kept;
}

class FilterAwareValidationPipe extends ValidationPipe {
  override transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    return super.transform(metadata.type === 'query' ? withoutEmptyFields(value) : value, metadata);
  }
}

/**
 * Global validation: unknown fields are refused (a typo should not be silently ignored),
 * values are transformed to the DTO's types, and errors never echo the submitted value, since
 * that value may be a secret.
 */
export function createValidationPipe(): ValidationPipe {
  return new FilterAwareValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    transform: true,
    validationError: { target: false, value: false },
    exceptionFactory: (errors) => new ValidationProblem(toFieldErrors(errors)),
  });
}

/**
 * Validates a console form into a DTO with the API's rules, returning field errors instead of
 * throwing, so the page can show each message next to its field.
 */
export async function validateForm<T extends object>(
  dtoClass: new () => T,
  body: unknown,
): Promise<{ dto: T; errors: FieldError[] }> {
  const { _csrf: _token, ...fields } = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>;
  const dto = plainToInstance(dtoClass, fields);
  const errors = toFieldErrors(
    await validate(dto, {
      whitelist: true,
      forbidNonWhitelisted: true,
      validationError: { target: false, value: false },
    }),
  );
  return { dto, errors };
}
