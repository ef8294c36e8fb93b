from skin_cnn.cli import main

main()
