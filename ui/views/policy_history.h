#pragma once
// Policy history: pick two stored versions (op `policies` lists them, op
// `policy` gives each text) and see what a job may do differently — the
// semantic diff of moat_policy (policy::diff / to_text: added and removed
// syscalls and rules, changed limits...) above the two TOML texts side by
// side, lines present in only one of them marked.
#include <QWidget>

#include <cstdint>

class QComboBox;
class QLabel;
class QPlainTextEdit;
class QSplitter;

namespace moat::ui {

class Backend;
class PolicyListModel;

class PolicyHistory final : public QWidget {
    Q_OBJECT
public:
    PolicyHistory(Backend* backend, PolicyListModel* model, QWidget* parent = nullptr);

    // Compares `id` with the previous version of the same name (if any).
    void showVersion(int64_t id);
    // Compares two stored versions by id.
    void compare(int64_t a, int64_t b);
    QString diffText() const;
    QPlainTextEdit* leftText() const { return m_left; }
    QPlainTextEdit* rightText() const { return m_right; }
    QSplitter* splitter() const { return m_split; }

signals:
    void message(const QString& text, int timeoutMs);

private:
    void fillCombos();
    void compareSelected();
    void show(const std::string& a, const std::string& labelA, const std::string& b, const std::string& labelB);

    Backend* m_backend;
    PolicyListModel* m_model;
    QComboBox* m_a;
    QComboBox* m_b;
    QLabel* m_status;
    QPlainTextEdit* m_diff;
    QPlainTextEdit* m_left;
    QPlainTextEdit* m_right;
    QLabel* m_leftTitle;
    QLabel* m_rightTitle;
    QSplitter* m_split;
    uint64_t m_generation = 0;
    bool m_filling = false;
};

}  // namespace moat::ui
