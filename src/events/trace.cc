#include "events/trace.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

namespace holdfast {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return out;
}

// "<a@b>" and "A@B" compare equal.
std::string NormAddress(std::string_view a) {
  while (!a.empty() && (a.front() == ' ' || a.front() == '<')) a.remove_prefix(1);
  while (!a.empty() && (a.back() == ' ' || a.back() == '>')) a.remove_suffix(1);
  return Lower(a);
}

bool IsEnvelope(const Event& e) { return e.kind == "received" || e.kind == "replayed" || e.kind == "released"; }

bool ListHas(const std::string* list, const std::string& want) {
  if (list == nullptr) return false;
  size_t pos = 0;
  while (pos <= list->size()) {
    size_t comma = list->find(',', pos);
    if (comma == std::string::npos) comma = list->size();
    if (NormAddress(std::string_view(*list).substr(pos, comma - pos)) == want) return true;
    pos = comma + 1;
  }
  return false;
}

// Whether `e` names the message the query is after (without the time window).
bool Matches(const Event& e, const TraceQuery& q) {
  if (!q.id.empty() && Lower(e.id) != Lower(q.id)) return false;
  if (q.message_id.empty() && q.from.empty() && q.to.empty() && q.address.empty()) return !e.id.empty();
  if (e.kind == "delivered") {
    // A delivery names the user: enough for a `to` (or address) query alone.
    const std::string* user = e.Field("user");
    const std::string& who = q.to.empty() ? q.address : q.to;
    return q.message_id.empty() && q.from.empty() && (q.to.empty() || q.address.empty()) && user != nullptr &&
           Lower(*user) == NormAddress(who);
  }
  if (!IsEnvelope(e)) return false;
  if (!q.message_id.empty()) {
    const std::string* m = e.Field("message_id");
    if (m == nullptr || NormAddress(*m) != NormAddress(q.message_id)) return false;
  }
  if (!q.from.empty()) {
    const std::string* f = e.Field("from");
    if (f == nullptr || NormAddress(*f) != NormAddress(q.from == "<>" ? "" : q.from)) return false;
  }
  if (!q.to.empty() && !ListHas(e.Field("to"), NormAddress(q.to))) return false;
  if (!q.address.empty()) {
    const std::string* f = e.Field("from");
    const std::string want = NormAddress(q.address);
    if ((f == nullptr || NormAddress(*f) != want) && !ListHas(e.Field("to"), want)) return false;
  }
  return true;
}

// A field value for the text form: quoted if it holds a space, '"' or '='.
std::string Quote(const std::string& v) {
  if (!v.empty() && v.find_first_of(" \"=") == std::string::npos) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

Result<std::vector<MessageTrace>> RunTrace(Fs& fs, const std::string& events_dir, const TraceQuery& query,
                                           std::vector<std::string>* warnings) {
  // Pass 1: which messages, by the events in the window.
  std::set<std::string> ids;
  EventFilter find;
  find.since_ms = query.since_ms;
  find.until_ms = query.until_ms;
  find.keep = [&](const Event& e) {
    if (Matches(e, query)) ids.insert(e.id);
    return false;
  };
  HF_RETURN_IF_ERROR(ReadEvents(fs, events_dir, find, warnings).status());
  if (ids.empty()) return std::vector<MessageTrace>{};
  // Pass 2: everything that happened to them, whenever it happened.
  std::map<std::string, MessageTrace> by_id;
  EventFilter all;
  all.keep = [&](const Event& e) { return ids.count(e.id) > 0; };
  std::vector<std::string> again;  // pass 1 reported them already
  HF_ASSIGN_OR_RETURN(auto events, ReadEvents(fs, events_dir, all, &again));
  for (auto& e : events) {
    MessageTrace& t = by_id[e.id];
    t.id = e.id;
    t.events.push_back(std::move(e));
  }
  std::vector<MessageTrace> out;
  for (auto& [id, t] : by_id) out.push_back(std::move(t));
  std::stable_sort(out.begin(), out.end(), [](const MessageTrace& a, const MessageTrace& b) {
    return a.events.front().time_ms < b.events.front().time_ms;
  });
  return out;
}

std::string FormatTraceText(const std::vector<MessageTrace>& traces) {
  std::string out;
  for (const auto& t : traces) {
    // The heading: the envelope as first recorded.
    std::string heading = "message " + t.id;
    for (const auto& e : t.events) {
      if (!IsEnvelope(e)) continue;
      const std::string* m = e.Field("message_id");
      const std::string* f = e.Field("from");
      if (m != nullptr && !m->empty()) heading += "  message-id " + *m;
      if (f != nullptr) heading += "  from <" + *f + ">";
      break;
    }
    if (!out.empty()) out += "\n";
    out += heading + "\n";
    for (const auto& e : t.events) {
      std::string line = "  " + FormatEventTime(e.time_ms) + "  " + e.kind;
      line.resize(std::max<size_t>(line.size(), 2 + 24 + 2 + 18), ' ');
      for (const auto& [k, v] : e.fields) {
        if (!v.empty()) line += " " + k + "=" + Quote(v);
      }
      out += line + "\n";
    }
  }
  return out;
}

std::string FormatTraceJson(const std::vector<MessageTrace>& traces) {
  std::string out;
  for (const auto& t : traces) {
    nlohmann::ordered_json m;
    m["id"] = t.id;
    m["events"] = nlohmann::ordered_json::array();
    for (const auto& e : t.events) {
      nlohmann::ordered_json j;
      j["time"] = FormatEventTime(e.time_ms);
      j["time_ms"] = e.time_ms;
      j["event"] = e.kind;
      for (const auto& [k, v] : e.fields) {
        if (!j.contains(k)) j[k] = v;
      }
      m["events"].push_back(std::move(j));
    }
    // Field values are bytes from the wire: never let one break the output.
    out += m.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  }
  return out;
}

std::optional<int64_t> ParseTraceTime(std::string_view text, int64_t now_ms) {
  if (text.empty()) return std::nullopt;
  // An age: digits then one unit.
  const char unit = text.back();
  if (text.size() >= 2 && (unit == 's' || unit == 'm' || unit == 'h' || unit == 'd')) {
    int64_t n = 0;
    bool digits = true;
    for (char c : text.substr(0, text.size() - 1)) {
      if (c < '0' || c > '9' || n > 1000000000) {
        digits = false;
        break;
      }
      n = n * 10 + (c - '0');
    }
    if (digits) {
      const int64_t scale = unit == 's' ? 1000 : unit == 'm' ? 60000 : unit == 'h' ? 3600000 : 86400000;
      return now_ms - n * scale;
    }
  }
  // YYYY-MM-DD[THH:MM[:SS]][Z]
  std::tm tm{};
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  std::string t(text);
  if (!t.empty() && (t.back() == 'Z' || t.back() == 'z')) t.pop_back();
  int consumed = 0;
  if (std::sscanf(t.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &consumed) != 3 || consumed != 10) return std::nullopt;
  if (t.size() > 10) {
    if (t[10] != 'T' && t[10] != ' ') return std::nullopt;
    int more = 0;
    const std::string rest = t.substr(11);
    if (std::sscanf(rest.c_str(), "%2d:%2d:%2d%n", &h, &mi, &s, &more) == 3 && more == static_cast<int>(rest.size())) {
    } else if (s = 0, more = 0;
               std::sscanf(rest.c_str(), "%2d:%2d%n", &h, &mi, &more) == 2 && more == static_cast<int>(rest.size())) {
    } else {
      return std::nullopt;
    }
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 || y < 1970) return std::nullopt;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

}  // namespace holdfast
