import { getMetadataStorage } from 'class-validator';
import type { OpenAPIObject } from '@nestjs/swagger';

interface Metadata {
  type: string;
  name?: string;
  target: unknown;
  propertyName: string;
  constraints?: unknown[];
  each?: boolean;
}

type Schema = Record<string, unknown>;

/** How one class-validator rule reads as JSON Schema (only those our DTOs use). */
function apply(rule: Metadata, schema: Schema): void {
  const c = rule.constraints ?? [];
  const target = rule.each ? ((schema.items ??= {}) as Schema) : schema;
  if (rule.each) schema.type = 'array';
  switch (rule.name) {
    case 'isString':
      target.type = 'string';
      break;
    case 'isInt':
      target.type = 'integer';
      break;
    case 'isNumber':
      target.type = 'number';
      break;
    case 'isBoolean':
      target.type = 'boolean';
      break;
    case 'isEmail':
      Object.assign(target, { type: 'string', format: 'email' });
      break;
    case 'isUuid':
      Object.assign(target, { type: 'string', format: 'uuid' });
      break;
    case 'isIso8601':
    case 'isDateString':
      Object.assign(target, { type: 'string', format: 'date-time' });
      break;
    case 'isUrl':
      Object.assign(target, { type: 'string', format: 'uri' });
      break;
    case 'isIn':
      target.enum = c[0];
      break;
    case 'isArray':
      schema.type = 'array';
      schema.items ??= {};
      break;
    case 'minLength':
      target.minLength = c[0];
      break;
    case 'maxLength':
      target.maxLength = c[0];
      break;
    case 'min':
      target.minimum = c[0];
      break;
    case 'max':
      target.maximum = c[0];
      break;
    case 'arrayMaxSize':
      schema.maxItems = c[0];
      break;
    case 'matches':
      if (c[0] instanceof RegExp) target.pattern = c[0].source;
      break;
  }
}

/**
 * Request bodies described from the DTOs' own validation rules, so the description says what
 * the API checks without a second set of decorators on every DTO: a schema Nest left empty gets
 * its properties, types, enums, lengths and ranges, and `required` for what is not @IsOptional.
 */
export function describeDtosFromValidators(document: OpenAPIObject): void {
  const schemas = (document.components?.schemas ?? {}) as Record<string, Schema>;
  const storage = getMetadataStorage() as unknown as { validationMetadatas: Map<unknown, Metadata[]> };
  for (const [target, rules] of storage.validationMetadatas) {
    const name = (target as { name?: string }).name;
    const schema = name ? schemas[name] : undefined;
    if (!schema || (schema.properties && Object.keys(schema.properties).length > 0)) continue;
    const properties: Record<string, Schema> = {};
    const optional = new Set<string>();
    for (const rule of rules) {
      const property = (properties[rule.propertyName] ??= {});
      if (rule.type === 'conditionalValidation') optional.add(rule.propertyName);
      else if (rule.type === 'nestedValidation') property.type = 'object';
      else apply(rule, property);
    }
    schema.type = 'object';
    schema.properties = properties;
    const required = Object.keys(properties).filter((p) => !optional.has(p));
    if (required.length) schema.required = required;
  }
}
