#pragma once
// Aggregates of the denials an EventTableModel has loaded, for the
// investigation charts: per-second counts stacked by syscall, and totals.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "models/event_row.h"

namespace moat::ui {

class DenialStats final {
public:
    void clear();
    void add(const EventRow& e);  // ignores non-denials

    uint64_t total() const { return m_total; }
    // Syscalls by total count, most denied first.
    std::vector<std::pair<std::string, uint64_t>> top(size_t n) const;
    // second (since the epoch) -> syscall -> count
    const std::map<int64_t, std::map<std::string, uint64_t>>& perSecond() const { return m_perSecond; }

private:
    std::map<int64_t, std::map<std::string, uint64_t>> m_perSecond;
    std::map<std::string, uint64_t> m_bySyscall;
    uint64_t m_total = 0;
};

}  // namespace moat::ui
