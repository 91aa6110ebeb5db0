// Reads what JavaScript passes to the native bindings: the positional
// arguments of a call, or the properties of a config object. The facade
// validates everything first with friendly messages; this is the backstop, so
// misuse fails with our error instead of crashing. The first value of the
// wrong type is remembered and every later read returns a default; error()
// then names the problem: a call's signature (SPG_INVALID_ARGUMENT), or
// "config.<key> must be a <type>" (SPG_INVALID_OPTION). A sync binding throws
// that error, an async one returns a promise rejected with it.
//
// Thread: the JS thread. Lifetime: one binding call.
#pragma once

#include <napi.h>

#include <cstdint>
#include <optional>
#include <string>

#include "errors.h"

namespace spg {

class ArgReader {
 public:
  // An argument's position, or a property's name.
  struct Key {
    Key(size_t i) : index(i) {}  // NOLINT(runtime/explicit): reads as info[i]
    Key(int i) : index(static_cast<size_t>(i)) {}  // NOLINT(runtime/explicit)
    Key(const char* n) : name(n) {}  // NOLINT(runtime/explicit): reads as config.n
    size_t index = 0;
    const char* name = nullptr;
  };

  // The arguments of a call; `signature` is the message when one is wrong.
  ArgReader(const Napi::CallbackInfo& info, const char* signature)
      : info_(&info), what_(signature) {}
  // The properties of an object; `name` is what the messages call it.
  ArgReader(Napi::Object object, const char* name) : object_(object), what_(name) {}

  std::string String(Key key) {
    Napi::Value v = Expect(key, At(key).IsString(), "a string");
    return ok() ? v.As<Napi::String>().Utf8Value() : std::string();
  }
  // A string left in JS (to be measured before it is copied).
  Napi::String JsString(Key key) {
    Napi::Value v = Expect(key, At(key).IsString(), "a string");
    return ok() ? v.As<Napi::String>() : Napi::String::New(Env(), "");
  }
  // null or undefined (a missing argument too) reads as nullopt.
  std::optional<std::string> NullableString(Key key) {
    Napi::Value v = At(key);
    if (IsNullish(v)) return std::nullopt;
    Expect(key, v.IsString(), "a string or null");
    if (!ok()) return std::nullopt;
    return v.As<Napi::String>().Utf8Value();
  }
  double Number(Key key) {
    Napi::Value v = Expect(key, At(key).IsNumber(), "a number");
    return ok() ? v.As<Napi::Number>().DoubleValue() : 0;
  }
  // A number as JavaScript's ToInt32 makes it (the low 32 bits; NaN: 0).
  int32_t Int32(Key key) {
    Napi::Value v = Expect(key, At(key).IsNumber(), "a number");
    return ok() ? v.As<Napi::Number>().Int32Value() : 0;
  }
  std::optional<double> NullableNumber(Key key) {
    Napi::Value v = At(key);
    if (IsNullish(v)) return std::nullopt;
    Expect(key, v.IsNumber(), "a number or null");
    if (!ok()) return std::nullopt;
    return v.As<Napi::Number>().DoubleValue();
  }
  bool Boolean(Key key) {
    Napi::Value v = Expect(key, At(key).IsBoolean(), "a boolean");
    return ok() && v.As<Napi::Boolean>().Value();
  }
  Napi::Object Object(Key key) {
    Napi::Value v = Expect(key, At(key).IsObject(), "an object");
    return ok() ? v.As<Napi::Object>() : Napi::Object::New(Env());
  }
  Napi::Function Function(Key key) {
    Napi::Value v = Expect(key, At(key).IsFunction(), "a function");
    return ok() ? v.As<Napi::Function>() : Napi::Function();
  }
  // Any value (an array, checked by the caller).
  Napi::Value Value(Key key) { return At(key); }

  // A problem the caller found in a value it read (a range, an empty list).
  void Fail(std::string message) {
    if (ok()) error_ = MakeError(info_ ? code::kInvalidArgument : code::kInvalidOption, message);
  }
  bool ok() const { return !error_; }
  const ErrorInfo& error() const { return error_; }

  static bool IsNullish(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }

 private:
  Napi::Env Env() const { return info_ ? info_->Env() : object_.Env(); }
  Napi::Value At(const Key& key) const {
    return info_ ? (*info_)[key.index] : object_.Get(key.name);
  }
  Napi::Value Expect(const Key& key, bool valid, const char* type) {
    if (!valid && ok()) {
      Fail(info_ ? std::string(what_) : std::string(what_) + "." + key.name + " must be " + type);
    }
    return At(key);
  }

  const Napi::CallbackInfo* info_ = nullptr;
  Napi::Object object_;
  const char* what_;
  ErrorInfo error_;
};

}  // namespace spg
