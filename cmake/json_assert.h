// Included before every C++ source (CMakeLists.txt, -include). nlohmann::json
// checks a const operator[] on a missing key, and a few index preconditions,
// with JSON_ASSERT, which is assert(): nothing at all in a release build, so
// a peer's JSON without a key would be undefined behaviour wherever it is
// read. Every JSON Moat reads comes from a client, a job, a guest or a far
// host: the check throws instead, and moatd's request handler and the
// clients' frame handlers answer it as malformed input.
#pragma once
#include <stdexcept>
#define JSON_ASSERT(x) ((x) ? (void)0 : throw std::logic_error("malformed JSON: a required key or index is missing"))
