// gtest main for the console's tests: one QApplication, offscreen unless the
// environment says otherwise, and QStandardPaths in test mode so QSettings
// never touches the operator's real configuration.
#include <QApplication>
#include <QStandardPaths>

#include <gtest/gtest.h>

int main(int argc, char** argv) {
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
    QStandardPaths::setTestModeEnabled(true);
    QApplication app(argc, argv);
    QApplication::setOrganizationName(QStringLiteral("moat-test"));
    QApplication::setApplicationName(QStringLiteral("moat-console-test"));
    ::testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
