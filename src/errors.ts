/**
 * Errors the services raise on purpose. Each carries the HTTP status and the
 * stable `code` of the API's error body; the HTTP layer only translates.
 */
export class AppError extends Error {
  readonly status: number;
  readonly code: string;
  /** Response headers that belong to the answer (Retry-After, Allow). */
  readonly headers: Record<string, string> | undefined;
  constructor(status: number, code: string, message: string, headers?: Record<string, string>) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

export class ValidationError extends AppError {
  override name = 'ValidationError';
  constructor(code: string, message: string) {
    super(400, code, message);
  }
}

export class NotFoundError extends AppError {
  override name = 'NotFoundError';
  constructor(code: string, message: string) {
    super(404, code, message);
  }
}

export class ConflictError extends AppError {
  override name = 'ConflictError';
  constructor(code: string, message: string) {
    super(409, code, message);
  }
}
