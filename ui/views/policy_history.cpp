#include "views/policy_history.h"

#include <QComboBox>
#include <QFontDatabase>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSplitter>
#include <QTextBlock>
#include <QVBoxLayout>

#include <memory>
#include <set>

#include "backend/backend.h"
#include "models/policy_list_model.h"
#include "moat/policy/diff.h"
#include "moat/policy/parser.h"

namespace moat::ui {

using nlohmann::json;

namespace {

// Translucent backgrounds read in light and dark palettes alike.
const QColor kAdded(0, 170, 0, 70);
const QColor kRemoved(230, 0, 0, 70);
const QColor kChanged(255, 170, 0, 70);

QPlainTextEdit* textPane() {
    auto* e = new QPlainTextEdit;
    e->setReadOnly(true);
    e->setLineWrapMode(QPlainTextEdit::NoWrap);
    e->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    return e;
}

void markLines(QPlainTextEdit* e, const std::function<QColor(const QString&)>& colourOf) {
    QList<QTextEdit::ExtraSelection> marks;
    for (QTextBlock b = e->document()->begin(); b.isValid(); b = b.next()) {
        const QColor c = colourOf(b.text());
        if (!c.isValid()) continue;
        QTextEdit::ExtraSelection sel;
        sel.format.setBackground(c);
        sel.format.setProperty(QTextFormat::FullWidthSelection, true);
        sel.cursor = QTextCursor(b);
        marks << sel;
    }
    e->setExtraSelections(marks);
}

}  // namespace

PolicyHistory::PolicyHistory(Backend* backend, PolicyListModel* model, QWidget* parent)
    : QWidget(parent), m_backend(backend), m_model(model) {
    m_a = new QComboBox;
    m_b = new QComboBox;
    m_a->setObjectName(QStringLiteral("historyFrom"));
    m_b->setObjectName(QStringLiteral("historyTo"));
    m_a->setSizeAdjustPolicy(QComboBox::AdjustToContents);
    m_b->setSizeAdjustPolicy(QComboBox::AdjustToContents);
    auto* swap = new QPushButton(tr("Swap"));
    m_status = new QLabel;
    auto* top = new QHBoxLayout;
    top->addWidget(new QLabel(tr("From")));
    top->addWidget(m_a);
    top->addWidget(new QLabel(tr("to")));
    top->addWidget(m_b);
    top->addWidget(swap);
    top->addWidget(m_status, 1);

    m_diff = textPane();
    m_diff->setObjectName(QStringLiteral("semanticDiff"));
    m_diff->setPlaceholderText(tr("Pick two versions to see what a job may do differently."));
    m_left = textPane();
    m_right = textPane();
    m_leftTitle = new QLabel;
    m_rightTitle = new QLabel;
    auto pane = [](QLabel* title, QPlainTextEdit* text) {
        auto* w = new QWidget;
        auto* l = new QVBoxLayout(w);
        l->setContentsMargins(0, 0, 0, 0);
        l->addWidget(title);
        l->addWidget(text, 1);
        return w;
    };
    auto* texts = new QSplitter(Qt::Horizontal);
    texts->addWidget(pane(m_leftTitle, m_left));
    texts->addWidget(pane(m_rightTitle, m_right));
    auto* diffPane = new QWidget;
    auto* dl = new QVBoxLayout(diffPane);
    dl->setContentsMargins(0, 0, 0, 0);
    dl->addWidget(new QLabel(tr("<b>Semantic difference</b> (effective values: what a job may do differently)")));
    dl->addWidget(m_diff, 1);
    m_split = new QSplitter(Qt::Vertical);
    m_split->setObjectName(QStringLiteral("historySplitter"));
    m_split->addWidget(diffPane);
    m_split->addWidget(texts);
    m_split->setStretchFactor(0, 1);
    m_split->setStretchFactor(1, 2);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 4, 0, 0);
    layout->addLayout(top);
    layout->addWidget(m_split, 1);

    connect(m_model, &PolicyListModel::refreshed, this, &PolicyHistory::fillCombos);
    connect(m_model, &QAbstractItemModel::modelReset, this, &PolicyHistory::fillCombos);
    connect(m_a, &QComboBox::currentIndexChanged, this, &PolicyHistory::compareSelected);
    connect(m_b, &QComboBox::currentIndexChanged, this, &PolicyHistory::compareSelected);
    connect(swap, &QPushButton::clicked, this, [this] {
        const qint64 a = m_a->currentData().toLongLong(), b = m_b->currentData().toLongLong();
        compare(b, a);
    });
    fillCombos();
}

void PolicyHistory::fillCombos() {
    const QVariant a = m_a->currentData(), b = m_b->currentData();
    m_filling = true;
    for (QComboBox* c : {m_a, m_b}) {
        c->clear();
        for (int r = 0; r < m_model->rowCount(); ++r) {
            const PolicyVersionRow* p = m_model->policy(r);
            c->addItem(QStringLiteral("%1 v%2").arg(QString::fromStdString(p->name)).arg(p->version),
                       QVariant::fromValue<qlonglong>(p->id));
        }
    }
    m_a->setCurrentIndex(m_a->findData(a));
    m_b->setCurrentIndex(m_b->findData(b));
    m_filling = false;
}

void PolicyHistory::showVersion(int64_t id) {
    const PolicyVersionRow* cur = nullptr;
    for (int r = 0; r < m_model->rowCount(); ++r)
        if (m_model->policy(r)->id == id) cur = m_model->policy(r);
    if (!cur) return;
    int64_t prev = id;
    int prevVersion = 0;
    for (int r = 0; r < m_model->rowCount(); ++r) {
        const PolicyVersionRow* p = m_model->policy(r);
        if (p->name == cur->name && p->version < cur->version && p->version > prevVersion) {
            prev = p->id;
            prevVersion = p->version;
        }
    }
    compare(prev, id);
}

void PolicyHistory::compare(int64_t a, int64_t b) {
    m_filling = true;
    m_a->setCurrentIndex(m_a->findData(QVariant::fromValue<qlonglong>(a)));
    m_b->setCurrentIndex(m_b->findData(QVariant::fromValue<qlonglong>(b)));
    m_filling = false;
    compareSelected();
}

void PolicyHistory::compareSelected() {
    if (m_filling) return;
    const QVariant va = m_a->currentData(), vb = m_b->currentData();
    if (!va.isValid() || !vb.isValid()) return;
    const uint64_t gen = ++m_generation;
    const QString la = m_a->currentText(), lb = m_b->currentText();
    m_status->setText(tr("loading…"));
    auto texts = std::make_shared<std::pair<std::string, std::string>>();
    auto failed = [this](const json& r) {
        m_status->setText(tr("could not load: %1").arg(Backend::errorText(r)));
        emit message(m_status->text(), 8000);
    };
    m_backend->request({{"op", "policy"}, {"id", va.toLongLong()}}, this, [=, this](const json& ra) {
        if (gen != m_generation) return;
        if (!ra.value("ok", false)) return failed(ra);
        texts->first = ra.value("toml", std::string());
        m_backend->request({{"op", "policy"}, {"id", vb.toLongLong()}}, this, [=, this](const json& rb) {
            if (gen != m_generation) return;
            if (!rb.value("ok", false)) return failed(rb);
            show(texts->first, la.toStdString(), rb.value("toml", std::string()), lb.toStdString());
        });
    });
}

void PolicyHistory::show(const std::string& a, const std::string& labelA, const std::string& b, const std::string& labelB) {
    m_leftTitle->setText(QStringLiteral("<b>%1</b>").arg(QString::fromStdString(labelA).toHtmlEscaped()));
    m_rightTitle->setText(QStringLiteral("<b>%1</b>").arg(QString::fromStdString(labelB).toHtmlEscaped()));
    m_left->setPlainText(QString::fromStdString(a));
    m_right->setPlainText(QString::fromStdString(b));
    // Lines only one side has (a textual hint; the semantic diff is above).
    const QStringList la = m_left->toPlainText().split(u'\n'), lb = m_right->toPlainText().split(u'\n');
    const std::set<QString> sa(la.begin(), la.end()), sb(lb.begin(), lb.end());
    markLines(m_left, [&](const QString& l) { return sb.contains(l) || l.trimmed().isEmpty() ? QColor() : kRemoved; });
    markLines(m_right, [&](const QString& l) { return sa.contains(l) || l.trimmed().isEmpty() ? QColor() : kAdded; });

    auto pa = moat::policy::parse_policy(a, labelA), pb = moat::policy::parse_policy(b, labelB);
    if (!pa.policy || !pb.policy) {
        m_diff->setPlainText(tr("A version no longer parses with this build, so it cannot be compared semantically."));
        m_status->setText(tr("not comparable"));
        return;
    }
    const auto d = moat::policy::diff(*pa.policy, *pb.policy);
    m_diff->setPlainText(QString::fromStdString(moat::policy::to_text(d)));
    markLines(m_diff, [](const QString& l) {
        return l.startsWith(u'+') ? kAdded : l.startsWith(u'-') ? kRemoved : l.startsWith(u'~') ? kChanged : QColor();
    });
    m_status->setText(d.empty() ? tr("same effective policy") : tr("%1 → %2").arg(QString::fromStdString(labelA), QString::fromStdString(labelB)));
}

QString PolicyHistory::diffText() const { return m_diff->toPlainText(); }

}  // namespace moat::ui
