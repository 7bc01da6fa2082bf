#pragma once
// Test seam for tests/unit/store: reaches into a Store to simulate conditions
// that cannot be produced from outside without privileges (a stalled writer,
// a full disk). Not installed, not used by production code.
#include <chrono>
#include <cstdint>
#include <mutex>

#include "moat/store/store.h"

namespace moat::store {

struct StoreTestAccess {
    // Holds the writer connection's mutex: the writer thread stalls before its
    // next transaction, so append() fills the queue deterministically.
    static std::unique_lock<std::mutex> hold_writer(Store& s);
    // PRAGMA max_page_count on the writer connection: the database cannot grow
    // past `pages`, so writes fail with SQLITE_FULL exactly as on a full disk.
    static Result<int64_t> set_max_page_count(Store& s, int64_t pages);
    // How long the writer waits with no rows before it frees the rest of the
    // last committed batch itself (the appends free it otherwise).
    static void set_grave_idle(Store& s, std::chrono::milliseconds idle);
};

}  // namespace moat::store
