from pioneer_telemetry.cli import main

main()
