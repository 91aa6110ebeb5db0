// The handler's config object (built and checked by the facade's options
// module) read once into plain data, which the handler passes down: the
// servers never read a setting back from it.
//
// Thread: the JS thread (it reads JS values).
#pragma once

#include <napi.h>

#include <cstddef>
#include <string>
#include <vector>

#include "conninfo.h"
#include "errors.h"
#include "placement.h"
#include "server.h"

namespace spg {

struct HandlerConfig {
  std::string table;         // quoted name, as given to to_regclass
  std::string index;         // quoted name of the expiry index
  std::string housekeeping;  // quoted name of the housekeeping record table
  std::string records;       // quoted name of the table of what a server missed
  std::string session_name;
  std::string placement_name;  // 'rendezvous', 'php' or 'failover' (the failoverMode option)
  Placement::Mode placement = Placement::Mode::kRendezvous;
  bool create_table = true;
  bool keep_expired = false;
  long long max_lifetime = 1440;  // whole seconds
  size_t max_data_size = 1 << 20;
  double gc_interval = 0;  // seconds
  double vacuum_interval = 0;
  ServerTimings timings;  // in milliseconds
  // One per `db` entry, in list order; the same server listed twice gets
  // distinct identities.
  std::vector<ServerSpec> servers;
};

// Reads `object` into `config`; a value that is missing, of the wrong type or
// out of range gives SPG_INVALID_OPTION naming it.
ErrorInfo ReadConfig(Napi::Object object, HandlerConfig* config);

}  // namespace spg
