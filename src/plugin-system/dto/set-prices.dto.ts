import { Transform, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsDefined,
  IsNumber,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';

const PRICE = {
  message: ({ property }: { property: string }) =>
    `${property} must be a price in USD per million tokens, from 0 to 100000`,
};
const REQUIRED = { message: ({ property }: { property: string }) => `${property} is required` };

/**
 * A number from a form or JSON. A blank field is no price at all: turned into 0 it would save
 * a free override for a model that costs money.
 */
const toPrice = ({ value }: { value: unknown }) =>
  typeof value === 'string' ? (value.trim() === '' ? undefined : Number(value)) : value;

export class PriceDto {
  @IsString()
  @MaxLength(200)
  @Matches(/^[\w./:@-]+$/, { message: 'model must be a model id such as gpt-4o-mini' })
  model!: string;

  @Transform(toPrice)
  @IsDefined(REQUIRED)
  @IsNumber({ allowNaN: false, allowInfinity: false }, PRICE)
  @Min(0, PRICE)
  @Max(100_000, PRICE)
  input!: number;

  @Transform(toPrice)
  @IsDefined(REQUIRED)
  @IsNumber({ allowNaN: false, allowInfinity: false }, PRICE)
  @Min(0, PRICE)
  @Max(100_000, PRICE)
  output!: number;

  @IsOptional()
  @Transform(toPrice)
  @IsNumber({ allowNaN: false, allowInfinity: false }, PRICE)
  @Min(0, PRICE)
  @Max(100_000, PRICE)
  cachedInput?: number;
}

/** `PUT /api/admin/providers/:id/pricing`: override the listed models' prices. */
export class SetPricesDto {
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(500)
  @ValidateNested({ each: true })
  @Type(() => PriceDto)
  prices!: PriceDto[];
}
