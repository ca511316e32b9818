; Inno Setup 6 script: the Windows installer for the one-folder app dist\moltbot\.
; It cannot be built on Linux. On Windows, from the repository root (PowerShell), see README.md:
;   py -3.11 -m venv .venv; .venv\Scripts\Activate.ps1
;   pip install --require-hashes -r installers\lock\bundle.txt; pip install --no-deps -e .
;   python installers\icon.py --ico build\pyinstaller\icons\moltbot.ico
;   $env:MOLTBOT_ICON = "build\pyinstaller\icons\moltbot.ico"
;   python -m PyInstaller --noconfirm --distpath dist --workpath build\pyinstaller installers\moltbot.spec
;   & "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" installers\windows\moltbot.iss
; Result: dist\moltbot-<version>-setup.exe. Installs for the current user (no administrator),
; adds a Start-menu shortcut to the tray, optionally starts the tray at sign-in (the same Run
; value the tray's own "Start at login" switches), and uninstalls cleanly; the workspace
; (%USERPROFILE%\ai-gateway) is the user's and stays.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{8819CBE8-C38B-4D72-AEAC-CF47E3FCF6D7}
AppName=Moltbot
AppVersion={#AppVersion}
AppVerName=Moltbot {#AppVersion}
AppPublisher=Moltbot
DefaultDirName={localappdata}\Programs\Moltbot
DefaultGroupName=Moltbot
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=moltbot-{#AppVersion}-setup
SetupIconFile=..\..\build\pyinstaller\icons\moltbot.ico
UninstallDisplayIcon={app}\moltbot-tray.exe
UninstallDisplayName=Moltbot
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Tasks]
Name: "startatlogin"; Description: "Start Moltbot when I sign in"; GroupDescription: "Start:"
Name: "desktopicon"; Description: "A desktop shortcut"; GroupDescription: "Shortcuts:"; Flags: unchecked

[Files]
Source: "..\..\dist\moltbot\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Moltbot"; Filename: "{app}\moltbot-tray.exe"; Comment: "Start and stop your AI assistant and open its console"
Name: "{autodesktop}\Moltbot"; Filename: "{app}\moltbot-tray.exe"; Tasks: desktopicon

[Registry]
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "Moltbot"; ValueData: """{app}\moltbot-tray.exe"""; Flags: uninsdeletevalue; Tasks: startatlogin
; Creates nothing; removes the value at uninstall even when the tray's own switch wrote it.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: none; ValueName: "Moltbot"; Flags: uninsdeletevalue

[Run]
Filename: "{app}\moltbot-tray.exe"; Description: "Start Moltbot now"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; Stop a gateway this install runs before its files go.
Filename: "{app}\moltbot.exe"; Parameters: "gateway stop"; Flags: runhidden waituntilterminated; RunOnceId: "StopGateway"

