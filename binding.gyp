{
  "targets": [
    {
      "target_name": "session_pgsql",
      "sources": [
        "native/addon.cc",
        "native/config.cc",
        "native/conninfo.cc",
        "native/connection.cc",
        "native/errors.cc",
        "native/fanout.cc",
        "native/handler.cc",
        "native/housekeeping.cc",
        "native/pipeline.cc",
        "native/placement.cc",
        "native/records.cc",
        "native/recovery.cc",
        "native/server.cc",
        "native/sql.cc",
        "native/testing.cc",
        "native/versions.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!(node scripts/find-libpq.js --include-dir)"
      ],
      "libraries": ["<!@(node scripts/find-libpq.js --libs)"],
      "ldflags": ["<!@(node scripts/find-libpq.js --rpath)"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_SYMBOLS_PRIVATE_EXTERN": "YES"
      }
    }
  ]
}
