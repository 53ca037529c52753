"""inferlab.engine"""
