#include "testing.h"

#include <string>
#include <vector>

#include "pipeline.h"
#include "sql.h"

namespace spg {

namespace {

Napi::Value Throw(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, "__settleForTest(batch, end): " + message)
      .ThrowAsJavaScriptException();
  return env.Undefined();
}

const char* Name(Decision d) {
  switch (d) {
    case Decision::kSettle:
      return "settle";
    case Decision::kRetry:
      return "retry";
    case Decision::kResendAlone:
      return "alone";
    case Decision::kHandBack:
      return "handBack";
  }
  return "?";
}

}  // namespace

Napi::Value JsSettleForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsString()) {
    return Throw(env, "batch must be an array and end a string");
  }
  const std::string end_name = info[1].As<Napi::String>().Utf8Value();
  if (end_name != "sync" && end_name != "lost") return Throw(env, "end must be 'sync' or 'lost'");
  Napi::Array in = info[0].As<Napi::Array>();
  std::vector<SyncOutcome> batch;
  for (uint32_t i = 0; i < in.Length(); ++i) {
    Napi::Value item = in.Get(i);
    if (!item.IsObject()) return Throw(env, "batch[" + std::to_string(i) + "] is not an object");
    Napi::Object o = item.As<Napi::Object>();
    auto flag = [&](const char* name) { return o.Get(name).ToBoolean().Value(); };
    Napi::Value riders = o.Get("riders");
    if (!riders.IsUndefined() &&
        (!riders.IsNumber() || riders.As<Napi::Number>().DoubleValue() < 0)) {
      return Throw(env, "batch[" + std::to_string(i) + "].riders must be a count");
    }
    SyncOutcome outcome;
    outcome.error = flag("error");
    outcome.aborted = flag("aborted");
    outcome.at_commit = flag("atCommit");
    outcome.riders = riders.IsUndefined() ? 0 : riders.As<Napi::Number>().Uint32Value();
    batch.push_back(outcome);
  }
  const std::vector<Decision> decisions =
      Decide(batch, end_name == "sync" ? BatchEnd::kSync : BatchEnd::kLost);
  Napi::Array out = Napi::Array::New(env, decisions.size());
  for (uint32_t i = 0; i < decisions.size(); ++i) out.Set(i, Name(decisions[i]));
  return out;
}

Napi::Value JsGcPlanForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBoolean()) {
    Napi::TypeError::New(env,
                         "__gcPlanForTest(serverVersion, expiryIndex): a number and a boolean")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int version = info[0].As<Napi::Number>().Int32Value();
  const GcWay way = ChooseGcWay(version, info[1].As<Napi::Boolean>().Value());
  Napi::Object out = Napi::Object::New(env);
  out.Set("way", way == GcWay::kByRanges ? "ranges" : "index");
  out.Set("createsIndex", !CreatesWithoutExpiryIndex(version));
  return out;
}

}  // namespace spg
