// The session fields the adapter tests use, declared once for express-session and Fastify
// (module augmentation is program-wide, so every test file sees them).
import 'express-session';
import 'fastify';

declare module 'express-session' {
  interface SessionData {
    views?: number;
    note?: string;
  }
}

declare module 'fastify' {
  interface Session {
    views?: number;
  }
}
