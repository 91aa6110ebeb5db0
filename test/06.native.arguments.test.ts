// The native bindings' own argument checks (native/args.h), called directly rather than through
// the facade, which validates first: a value of the wrong type gives our SessionPgsqlError with
// a code, never a bare TypeError or a crash; async bindings reject with it, sync ones throw it.
// The handler is never opened, so no server is needed (its one entry is a port nothing serves).
import { expect } from 'chai';
import { ErrorCode } from '../lib';
import { native, type NativeConfig, type NativeHandler } from '../lib/native';
import { resolveOptions } from '../lib/options';
import { rejection, thrown } from './support/errors';

const DEAD = 'host=127.0.0.1 port=1 dbname=x user=y';
const ID = 'abcdefghijklmnopqrstuvwxyz012345';

// Calls a method as JavaScript could, whatever its declared parameters.
type Loose = Record<string, (...args: unknown[]) => unknown>;

describe('06 native argument checks', () => {
  let config: NativeConfig;
  let handler: NativeHandler;
  let loose: Loose;

  before(() => {
    config = resolveOptions({ db: DEAD }).native;
    handler = new native.Handler(config);
    loose = handler as unknown as Loose;
  });

  after(() => handler.close());

  const WRITE = [ID, 'data', '', null, null, 0, 0, 0, null];

  it('async bindings reject a value of the wrong type with SPG_INVALID_ARGUMENT', async () => {
    const calls: Array<[string, unknown[]]> = [
      ['read', []],
      ['read', [5]],
      ['message', [null]],
      ['touch', [{}]],
      ['touch', [ID, 'soon']],
      ['destroy', [10n]],
      ['write', [ID]],
      ['write', WRITE.map((v, i) => (i === 1 ? Buffer.from('x') : v))],
      ['write', WRITE.map((v, i) => (i === 3 ? '60' : v))],
      ['write', WRITE.map((v, i) => (i === 4 ? 7 : v))],
      ['write', WRITE.map((v, i) => (i === 6 ? '1' : v))],
    ];
    for (const [method, args] of calls) {
      const err = await rejection(loose[method]!.apply(handler, args) as Promise<unknown>);
      expect(err.code, `${method}(${args.map(String).join(', ')})`).to.equal(
        ErrorCode.InvalidArgument,
      );
      expect(err.message).to.match(new RegExp(`^${method}\\(`));
    }
  });

  it('an expiry out of range is an argument error too', async () => {
    const args = WRITE.map((v, i) => (i === 3 ? -1 : v));
    const err = await rejection(loose.write!.apply(handler, args) as Promise<unknown>);
    expect(err.code).to.equal(ErrorCode.InvalidArgument);
    expect(err.message).to.include('expires');
  });

  it('sync bindings throw the same error, with the same code', () => {
    for (const [method, args] of [
      ['order', [5]],
      ['order', []],
      ['onEvent', ['listener']],
    ] as Array<[string, unknown[]]>) {
      const err = thrown(() => loose[method]!.apply(handler, args));
      expect(err.code, method).to.equal(ErrorCode.InvalidArgument);
    }
    const loader = native as unknown as Loose;
    expect(thrown(() => loader.inspectConninfo!(42)).code).to.equal(ErrorCode.InvalidArgument);
    expect(thrown(() => loader.initialize!('not a class', null)).code).to.equal(
      ErrorCode.InvalidArgument,
    );
    // An entry libpq cannot parse is an option error, of the same class.
    expect(thrown(() => native.inspectConninfo("host='unclosed")).code).to.equal(
      ErrorCode.InvalidOption,
    );
  });

  it('the constructor throws SPG_INVALID_ARGUMENT without a config, SPG_INVALID_OPTION for a bad one', () => {
    const Handler = native.Handler as unknown as new (...args: unknown[]) => NativeHandler;
    expect(thrown(() => new Handler()).code).to.equal(ErrorCode.InvalidArgument);
    expect(thrown(() => new Handler('db')).code).to.equal(ErrorCode.InvalidArgument);
    const bad = (change: Record<string, unknown>) =>
      thrown(() => new Handler({ ...config, ...change }));
    expect(bad({ table: 5 }).message).to.equal('config.table must be a string');
    expect(bad({ maxBatch: '2' }).message).to.equal('config.maxBatch must be a number');
    expect(bad({ keepExpired: 1 }).message).to.equal('config.keepExpired must be a boolean');
    expect(bad({ servers: [] }).code).to.equal(ErrorCode.InvalidOption);
    expect(bad({ pooler: 'session' }).code).to.equal(ErrorCode.InvalidOption);
  });

  it('nothing of the handler was started by the failed calls', () => {
    const status = handler.status();
    expect(status.inFlight).to.equal(0);
    expect(status.servers.map((s) => s.state)).to.deep.equal(['down']);
  });
});
