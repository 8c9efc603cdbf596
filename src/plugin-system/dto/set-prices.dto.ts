import { Type } from 'class-transformer';
import { StrictNumber } from '../../common/validators';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsNumber,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';

const PRICE = { message: 'must be a price in USD per million tokens, from 0 to 100000' };

export class PriceDto {
  @IsString()
  @MaxLength(200)
  @Matches(/^[\w./:@-]+$/, { message: 'model must be a model id such as gpt-4o-mini' })
  model!: string;

  @StrictNumber()
  @IsNumber({ allowNaN: false, allowInfinity: false }, PRICE)
  @Min(0, PRICE)
  @Max(100_000, PRICE)
  input!: number;

  @StrictNumber()
  @IsNumber({ allowNaN: false, allowInfinity: false }, PRICE)
  @Min(0, PRICE)
  @Max(100_000, PRICE)
  output!: number;

  @IsOptional()
  @StrictNumber()
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
