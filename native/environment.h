// What the handler needs of its environment (main thread or one worker),
// beyond the event loop it passes down to its servers: the facade's error
// class and row factory, given once per environment, and to be abandoned by
// the environment's teardown. Addon implements it; the handler never sees
// the addon.
//
// Thread: the JS thread of one environment. Lifetime: the environment's.
#pragma once

#include <napi.h>

#include "loop.h"

namespace spg {

class Environment : public Loop {
 public:
  // An object the environment's teardown must close, before its connections.
  class Resident {
   public:
    // Closes everything, settles nothing (no JS can run any more).
    virtual void Abandon() = 0;

   protected:
    ~Resident() = default;
  };
  // The facade's SessionPgsqlError and nativeRow, set by the addon's
  // initialize(errorClass, makeRow); empty before.
  virtual const Napi::FunctionReference& error_class() const = 0;
  virtual const Napi::FunctionReference& row_factory() const = 0;

  using Loop::Register;
  using Loop::Unregister;
  virtual void Register(Resident* resident) = 0;
  virtual void Unregister(Resident* resident) = 0;

 protected:
  ~Environment() = default;
};

}  // namespace spg
