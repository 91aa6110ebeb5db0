// Bindings that reach pure internals from the unit tests, without a server
// (test/0*.test.ts). Not part of the API: lib/native.ts marks them internal.
//
// Thread: any JS thread; they touch no per-environment state.
#pragma once

#include <napi.h>

namespace spg {

// __settleForTest(batch, end): Decide() (pipeline.h) over plain objects.
// batch: [{ error?, aborted?, atCommit?: boolean, riders?: number }] in the
// order sent; end: 'sync' | 'lost'. Returns one of 'settle', 'retry', 'alone',
// 'handBack' per op.
Napi::Value JsSettleForTest(const Napi::CallbackInfo& info);

// __gcPlanForTest(serverVersion, expiryIndex): ChooseGcWay() and
// CreatesWithoutExpiryIndex() (sql.h) as { way: 'index' | 'ranges',
// createsIndex: boolean }, for servers the tests do not have (before 14).
Napi::Value JsGcPlanForTest(const Napi::CallbackInfo& info);

}  // namespace spg
